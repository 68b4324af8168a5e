-- mod_component_xep0225: XEP-0225 (Component Connections) server side for Prosody 0.12
--
-- A component connects like a client (jabber:client stream, 'to' = a VirtualHost),
-- negotiates STARTTLS with that VirtualHost's certificate, authenticates with SASL
-- as a domain identity (the 'component_secret' of `Component "<identity>"`), and then
-- binds any number of hostnames (urn:xmpp:component:0). Every bindable hostname is
-- declared as `Component "<hostname>" "component_xep0225"`.
--
-- See README.md next to this file for configuration and behaviour.

module:set_global();

local st = require "util.stanza";
local new_xmpp_stream = require "util.xmppstream".new;
local new_sasl = require "util.sasl".new;
local base64 = require "util.encodings".base64;
local nameprep = require "util.encodings".stringprep.nameprep;
local idna_to_ascii = require "util.encodings".idna.to_ascii;
local jid_prepped_split = require "util.jid".prepped_split;
local uuid_generate = require "util.uuid".generate;
local logger = require "util.logger";
local timer = require "util.timer";
local async = require "util.async";
local configmanager = require "core.configmanager";
local certmanager = require "core.certmanager";
local xpcall = require "util.xpcall".xpcall;
local traceback = debug.traceback;

local hosts = prosody.hosts;
local core_process_stanza = prosody.core_process_stanza;
local rawgetopt = configmanager.rawget;

local xmlns_streams = "http://etherx.jabber.org/streams";
local xmlns_xmpp_streams = "urn:ietf:params:xml:ns:xmpp-streams";
local xmlns_tls = "urn:ietf:params:xml:ns:xmpp-tls";
local xmlns_sasl = "urn:ietf:params:xml:ns:xmpp-sasl";
local xmlns_component = "urn:xmpp:component:0";
local xmlns_prosody_component = "xmpp:prosody.im/protocol/component";

local log = module._log;

-- Options (global section)
local opt_auth_timeout = module:get_option_number("component_xep0225_auth_timeout", 30);
local opt_unauthed_size = module:get_option_number("component_xep0225_unauthed_max_stanza_size", 10000);
local opt_max_stanza_size = module:get_option_number("component_xep0225_max_stanza_size",
	module:get_option_number("component_stanza_size_limit", 1024*512));
local opt_max_sasl_failures = module:get_option_number("component_xep0225_max_sasl_failures", 3);
local opt_allow_plaintext = module:get_option_boolean("component_xep0225_allow_unencrypted", false);
local opt_close_timeout = module:get_option_number("component_xep0225_close_timeout", 5);
local opt_keepalives = module:get_option_boolean("component_xep0225_tcp_keepalives",
	module:get_option_boolean("tcp_keepalives", true));

if opt_allow_plaintext then
	module:log("warn", "component_xep0225_allow_unencrypted is enabled: components may authenticate without TLS (SCRAM only). Do not use this in production.");
end

-- Shared state. `bindable[host] = true` for every host that declares this module;
-- `bound[host] = session` for every hostname currently bound to a stream.
local bindable = module:shared("bindable");
local bound = module:shared("bound");
local sessions = module:shared("sessions"); -- conn -> session

local tls_contexts = {}; -- server host -> context, or false when it could not be built
module:hook_global("config-reloaded", function () tls_contexts = {}; end);

-- Per-host part: routing for `Component "H" "component_xep0225"` ---------------------

local function bounce(event)
	local origin, stanza = event.origin, event.stanza;
	local st_type = stanza.attr.type;
	if st_type == "error" or st_type == "result" then
		return true; -- never answer errors or results
	end
	local host = event.host_name;
	local reply = st.error_reply(stanza, "wait", "remote-server-timeout", "Component unavailable", host)
		:tag("not-connected", { xmlns = xmlns_prosody_component }):up();
	if origin and origin.send then
		origin.send(reply);
	else
		prosody.core_route_stanza(hosts[host], reply);
	end
	return true;
end

function module.add_host(module)
	if module:get_host_type() ~= "component" then
		error("mod_component_xep0225 must be loaded as a component: Component \"" .. module.host
			.. "\" \"component_xep0225\"", 0);
	end
	local host = module.host;
	bindable[host] = true;
	module:set_status("warn", "Not bound");

	local function handle_stanza(event)
		local session = bound[host];
		local stanza = event.stanza;
		if session and session.send then
			stanza.attr.xmlns = nil;
			session.send(stanza);
			return true;
		end
		module:log("debug", "Hostname not bound, bouncing: %s", stanza:top_tag());
		event.host_name = host;
		return bounce(event);
	end

	for _, kind in ipairs({ "iq", "message", "presence" }) do
		for _, to_type in ipairs({ "bare", "full", "host" }) do
			module:hook(kind .. "/" .. to_type, handle_stanza, -1);
		end
	end

	function module.unload()
		bindable[host] = nil;
		local session = bound[host];
		if session and session.bound then
			session.bound[host] = nil;
		end
		bound[host] = nil;
	end
end

-- Stream part -------------------------------------------------------------------------

local listener = {};
local stream_callbacks = { default_ns = "jabber:client" };

local function stream_header(session)
	local attr = {
		["xmlns:stream"] = xmlns_streams;
		["xml:lang"] = "en";
		xmlns = "jabber:client";
		version = "1.0";
		id = session.streamid or "";
		from = session.server_host;
	};
	return "<?xml version='1.0'?>" .. st.stanza("stream:stream", attr):top_tag();
end

local function set_host_status(host, level, text)
	if hosts[host] and bindable[host] then
		module:context(host):set_status(level, text);
	end
end

local function unbind_all(session)
	if not session.bound then return; end
	for host in pairs(session.bound) do
		if bound[host] == session then
			bound[host] = nil;
			set_host_status(host, "warn", "Not bound");
			session.log("info", "Unbound %s", host);
		end
	end
	session.bound = {};
end

local function stop_auth_timer(session)
	if session.auth_timer then
		timer.stop(session.auth_timer);
		session.auth_timer = nil;
	end
end

local function session_close(session, reason)
	if session.closing or session.destroyed then return; end
	session.closing = true;
	stop_auth_timer(session);
	unbind_all(session); -- stop routing to this stream at once
	local conn = session.conn;
	if not conn then return; end
	if session.notopen then
		session.send(stream_header(session));
	end
	if reason then
		local stream_error;
		if type(reason) == "string" then
			stream_error = st.stanza("stream:error"):tag(reason, { xmlns = xmlns_xmpp_streams }):up();
		elseif st.is_stanza(reason) then
			stream_error = reason;
		elseif type(reason) == "table" and reason.condition then
			stream_error = st.stanza("stream:error"):tag(reason.condition, { xmlns = xmlns_xmpp_streams }):up();
			if reason.text then
				stream_error:tag("text", { xmlns = xmlns_xmpp_streams }):text(reason.text):up();
			end
			if reason.extra then
				stream_error:add_child(reason.extra);
			end
		end
		if stream_error then
			session.log("info", "Closing stream with error: %s", stream_error);
			session.send(stream_error);
		end
	end
	session.send("</stream:stream>");
	session.send = function () return false; end
	-- net.server_epoll flushes the write buffer before the socket is closed;
	-- listener.ondisconnect runs when it is really gone.
	conn:close();
end

-- TLS ---------------------------------------------------------------------------------

local function get_tls_context(host)
	local ctx = tls_contexts[host];
	if ctx ~= nil then return ctx or nil; end
	local NULL = {};
	local err;
	ctx, err = certmanager.create_context(host, "server",
		rawgetopt(host, "c2s_ssl") or NULL,
		rawgetopt(host, "ssl") or NULL,
		rawgetopt("*", "c2s_ssl") or NULL);
	if not ctx then
		module:log("error", "No TLS context for %s: %s", host, err);
	end
	tls_contexts[host] = ctx or false;
	return ctx;
end

-- SASL --------------------------------------------------------------------------------

-- A password that cannot be guessed, returned for unknown identities so that SCRAM
-- does not reveal whether an identity exists (the exchange fails at the proof).
local decoy_secret = uuid_generate() .. uuid_generate();

local function identity_is_valid(identity)
	return identity ~= nil
		and rawgetopt(identity, "component_module") == "component_xep0225"
		and type(rawgetopt(identity, "component_secret")) == "string";
end

local function new_sasl_handler(session)
	local profile = {
		nodeprep = false; -- the authcid is a domain, not a node
		mechanisms = { ["SCRAM-SHA-1"] = true, ["SCRAM-SHA-256"] = true };
		plain = function (_, authcid)
			local identity = authcid and nameprep(authcid);
			if identity_is_valid(identity) then
				return rawgetopt(identity, "component_secret"), true;
			end
			session.log("info", "SASL attempt for unknown identity %q", tostring(authcid));
			return decoy_secret, true;
		end;
	};
	if session.secure then
		profile.mechanisms["PLAIN"] = true;
	end
	-- No channel binding handler on purpose: 0.12 only implements 'tls-unique' for
	-- SCRAM-*-PLUS, which does not exist under TLS 1.3, so -PLUS is never offered.
	return new_sasl(session.server_host, profile);
end

local function sasl_reply(name, data)
	local reply = st.stanza(name, { xmlns = xmlns_sasl });
	if data then
		if data == "" then reply:text("=") else reply:text(base64.encode(data)); end
	end
	return reply;
end

local function sasl_failure(session, condition, text)
	local reply = st.stanza("failure", { xmlns = xmlns_sasl }):tag(condition):up();
	if text then reply:tag("text"):text(text):up(); end
	session.send(reply);
	session.sasl_handler = nil;
	session.sasl_failures = (session.sasl_failures or 0) + 1;
	if session.sasl_failures >= opt_max_sasl_failures then
		session:close({ condition = "policy-violation", text = "Too many failed authentication attempts" });
	end
end

local function sasl_success(session, data)
	local handler = session.sasl_handler;
	local identity = handler and handler.username and nameprep(handler.username);
	if not identity_is_valid(identity) then
		-- Cannot happen with the decoy secret, but never authenticate an unknown identity.
		return sasl_failure(session, "not-authorized");
	end
	session.sasl_handler = nil;
	stop_auth_timer(session);
	session.identity = identity;
	session.host = identity;
	session.type = "component";
	session.component_xep0225 = true;
	session.bound = {};
	session.log("info", "Authenticated as %s (%s)", identity, session.sasl_mechanism or "?");
	session.send(sasl_reply("success", data));
	session.stream:set_stanza_size_limit(opt_max_stanza_size);
	session:reset_stream();
end

local function sasl_process(session, text)
	local message;
	if text and text ~= "" and text ~= "=" then
		message = base64.decode(text);
		if not message then
			return sasl_failure(session, "incorrect-encoding");
		end
	elseif text == "=" then
		message = "";
	end
	local status, ret, err_text = session.sasl_handler:process(message);
	if status == "challenge" then
		session.send(sasl_reply("challenge", ret or ""));
	elseif status == "success" then
		sasl_success(session, ret);
	else
		session.log("info", "SASL failure: %s%s", tostring(ret), err_text and (" (" .. err_text .. ")") or "");
		sasl_failure(session, ret or "not-authorized", nil);
	end
end

local function offered_mechanisms(session)
	local handler = new_sasl_handler(session);
	local list = {};
	for mech in pairs(handler:mechanisms()) do list[#list + 1] = mech; end
	table.sort(list);
	return list;
end

-- Features ----------------------------------------------------------------------------

local function send_features(session)
	local features = st.stanza("stream:features");
	if session.type == "component" then
		features:tag("bind", { xmlns = xmlns_component }):tag("required"):up():up();
	elseif not session.secure then
		if session.conn and session.conn.starttls and get_tls_context(session.server_host) then
			features:tag("starttls", { xmlns = xmlns_tls });
			if not opt_allow_plaintext then features:tag("required"):up(); end
			features:up();
		end
		if opt_allow_plaintext then
			features:tag("mechanisms", { xmlns = xmlns_sasl });
			for _, mech in ipairs(offered_mechanisms(session)) do
				features:text_tag("mechanism", mech);
			end
			features:up();
		end
	else
		features:tag("mechanisms", { xmlns = xmlns_sasl });
		for _, mech in ipairs(offered_mechanisms(session)) do
			features:text_tag("mechanism", mech);
		end
		features:up();
	end
	session.send(features);
end

-- Bind / unbind -----------------------------------------------------------------------

local function iq_error(session, stanza, err_type, condition, text)
	session.send(st.error_reply(stanza, err_type, condition, text));
end

-- A DNS-style domain: IDNA-convertible, letters/digits/hyphens in labels of 1..63 octets.
local function valid_domain(host)
	local ascii = idna_to_ascii(host);
	if not ascii or #ascii > 253 or ascii:find("^%.") or ascii:find("%.%.") or ascii:find("%.$") then
		return false;
	end
	for label in ascii:gmatch("[^.]+") do
		if #label > 63 or not label:find("^[%w%-]+$") or label:find("^%-") or label:find("%-$") then
			return false;
		end
	end
	return true;
end

-- Returns the prepped hostname, or nil plus (type, condition, text) for the error.
local function parse_hostname(child)
	local text = child:get_child_text("hostname");
	if not text or text == "" then
		return nil, "modify", "bad-request", "Missing <hostname/>";
	end
	local node, host, resource = jid_prepped_split(text);
	if not host or node then
		return nil, "modify", "bad-request", "Invalid hostname";
	end
	if not valid_domain(host) then
		return nil, "modify", "bad-request", "Invalid hostname";
	end
	if resource then
		return nil, "cancel", "feature-not-implemented", "Binding domain/resource is not supported";
	end
	return host;
end

local function allowed_hostnames(identity)
	local list = rawgetopt(identity, "component_xep0225_hostnames");
	local set = {};
	if type(list) == "string" then list = { list }; end
	if type(list) == "table" then
		for _, h in ipairs(list) do
			local prepped = type(h) == "string" and nameprep(h);
			if prepped then set[prepped] = true; end
		end
	end
	return set;
end

local function handle_bind(session, stanza, child)
	local host, err_type, condition, text = parse_hostname(child);
	if not host then
		return iq_error(session, stanza, err_type, condition, text);
	end
	if not allowed_hostnames(session.identity)[host] then
		session.log("info", "Refused bind of %s: not in component_xep0225_hostnames of %s", host, session.identity);
		return iq_error(session, stanza, "cancel", "not-allowed", "Hostname not allowed for this identity");
	end
	if not bindable[host] or not hosts[host] then
		session.log("warn", "Refused bind of %s: not declared as Component \"%s\" \"component_xep0225\"", host, host);
		return iq_error(session, stanza, "cancel", "not-allowed", "Hostname is not a component_xep0225 host");
	end
	local holder = bound[host];
	if holder and holder ~= session then
		return iq_error(session, stanza, "cancel", "conflict", "Hostname is bound by another stream");
	end
	if not holder then
		bound[host] = session;
		session.bound[host] = true;
		set_host_status(host, "info", "Bound by " .. session.identity);
		session.log("info", "Bound %s", host);
	end
	session.send(st.reply(stanza):tag("bind", { xmlns = xmlns_component }):text_tag("hostname", host));
end

local function handle_unbind(session, stanza, child)
	local host, err_type, condition, text = parse_hostname(child);
	if not host then
		if condition == "feature-not-implemented" then
			return iq_error(session, stanza, "cancel", "item-not-found", "Hostname is not bound on this stream");
		end
		return iq_error(session, stanza, err_type, condition, text);
	end
	if bound[host] ~= session or not session.bound[host] then
		return iq_error(session, stanza, "cancel", "item-not-found", "Hostname is not bound on this stream");
	end
	bound[host] = nil;
	session.bound[host] = nil;
	set_host_status(host, "warn", "Not bound");
	session.log("info", "Unbound %s", host);
	session.send(st.reply(stanza));
end

-- Is this IQ addressed to the server's component-binding service?
local function component_iq_child(session, stanza)
	if stanza.name ~= "iq" then return nil; end
	local to = stanza.attr.to;
	if to and to ~= session.server_host then return nil; end
	local child = stanza.tags[1];
	if child and child.attr.xmlns == xmlns_component then return child; end
	return nil;
end

-- Stanza handling ---------------------------------------------------------------------

local function handle_unauthed(session, stanza)
	local xmlns, name = stanza.attr.xmlns, stanza.name;
	if xmlns == xmlns_tls and name == "starttls" then
		if session.secure ~= nil then
			return session:close({ condition = "policy-violation", text = "TLS is already in use" });
		end
		local ctx = session.conn.starttls and get_tls_context(session.server_host);
		if not ctx then
			session.send(st.stanza("failure", { xmlns = xmlns_tls }));
			return session:close();
		end
		session.send(st.stanza("proceed", { xmlns = xmlns_tls }));
		session:reset_stream();
		session.conn:starttls(ctx);
		session.secure = false; -- true once the handshake completed
		session.log("debug", "TLS negotiation started");
		return;
	end
	if xmlns == xmlns_sasl then
		if not session.secure and not opt_allow_plaintext then
			if name == "auth" then
				session.send(st.stanza("failure", { xmlns = xmlns_sasl }):tag("encryption-required"):up());
				return;
			end
			return session:close({ condition = "not-authorized", text = "STARTTLS is required first" });
		end
		if name == "auth" then
			if session.sasl_handler then
				-- A new <auth/> aborts the exchange in progress (RFC 6120 6.4.4 allows a retry)
				session.sasl_handler = nil;
			end
			local mechanism = stanza.attr.mechanism;
			local handler = new_sasl_handler(session);
			if not mechanism or not handler:mechanisms()[mechanism] or not handler:select(mechanism) then
				return sasl_failure(session, "invalid-mechanism");
			end
			session.sasl_handler = handler;
			session.sasl_mechanism = mechanism;
			return sasl_process(session, stanza:get_text());
		elseif name == "response" then
			if not session.sasl_handler then
				return sasl_failure(session, "malformed-request", "No authentication in progress");
			end
			return sasl_process(session, stanza:get_text());
		elseif name == "abort" then
			session.sasl_handler = nil;
			return sasl_failure(session, "aborted");
		end
	end
	session.log("info", "Unexpected element before authentication: %s", stanza:top_tag());
	return session:close({ condition = "not-authorized", text = "Authenticate first" });
end

local function handle_authed(session, stanza)
	if stanza.attr.xmlns ~= nil
		or (stanza.name ~= "message" and stanza.name ~= "presence" and stanza.name ~= "iq") then
		return session:close({ condition = "unsupported-stanza-type",
			text = "Only jabber:client message, presence and iq are accepted after authentication" });
	end

	local child = component_iq_child(session, stanza);
	if child then
		if stanza.attr.type ~= "set" then
			if stanza.attr.type ~= "error" and stanza.attr.type ~= "result" then
				iq_error(session, stanza, "modify", "bad-request", "Bind and unbind use type='set'");
			end
			return;
		end
		if child.name == "bind" then return handle_bind(session, stanza, child); end
		if child.name == "unbind" then return handle_unbind(session, stanza, child); end
		return iq_error(session, stanza, "cancel", "feature-not-implemented");
	end

	local from = stanza.attr.from;
	if not from then
		return session:close({ condition = "improper-addressing", text = "Stanzas from a component need a 'from' address" });
	end
	local _, from_host = jid_prepped_split(from);
	if not from_host or not session.bound[from_host] or bound[from_host] ~= session then
		return session:close({ condition = "invalid-from",
			text = "'from' <" .. tostring(from) .. "> is not under a hostname bound on this stream" });
	end
	if not stanza.attr.to then
		if stanza.attr.type ~= "error" and stanza.attr.type ~= "result" then
			iq_error(session, stanza, "modify", "bad-request", "Stanzas from a component need a 'to' address");
		end
		return;
	end
	return core_process_stanza(session, stanza);
end

local function handleerr(err) log("error", "Traceback[component_xep0225]: %s", traceback(err, 2)); end

function stream_callbacks.handlestanza(session, stanza)
	if session.closing then return; end
	if session.type == "component" then
		return xpcall(handle_authed, handleerr, session, stanza);
	end
	return xpcall(handle_unauthed, handleerr, session, stanza);
end

function stream_callbacks.streamopened(session, attr)
	session.notopen = nil;
	session.streamid = uuid_generate();
	if session.secure == false then
		session.secure = true; -- a stream restart after STARTTLS means the handshake is done
	end
	local to = attr.to and nameprep(attr.to);
	local valid_to = to and hosts[to] and hosts[to].type == "local";
	if session.server_host and to ~= session.server_host then
		valid_to = false;
	end
	if valid_to then
		session.server_host = to;
	end
	session.send(stream_header(session));
	if not valid_to then
		return session:close({ condition = "host-unknown",
			text = "'to' must name a VirtualHost of this server (and stay the same across restarts)" });
	end
	if attr.version ~= "1.0" then
		return session:close({ condition = "unsupported-version", text = "XEP-0225 needs version='1.0'" });
	end
	send_features(session);
end

function stream_callbacks.streamclosed(session)
	session.log("debug", "Received </stream:stream>");
	session:close();
end

function stream_callbacks.error(session, err, data)
	if session.destroyed or session.closing then return; end
	if err == "no-stream" then
		session:close("invalid-namespace");
	elseif err == "parse-error" then
		session.log("debug", "XML parse error: %s", data);
		session:close("not-well-formed");
	elseif err == "invalid-top-level-element" then
		session:close("unsupported-stanza-type");
	elseif err == "stream-error" then
		local condition, text = "undefined-condition";
		for child in data:childtags(nil, xmlns_xmpp_streams) do
			if child.name ~= "text" then condition = child.name; else text = child:get_text(); end
		end
		session.log("info", "Stream error from the component: %s%s", condition, text and (" (" .. text .. ")") or "");
		session:close();
	else
		session:close("undefined-condition");
	end
end

-- Listener ----------------------------------------------------------------------------

function listener.onconnect(conn)
	local session = {
		type = "component_xep0225_unauthed";
		conn = conn;
		ip = conn:ip();
		notopen = true;
	};
	session.log = logger.init("xep0225_" .. tostring(session):match("[a-f0-9]+$"));
	session.close = session_close;
	function session.send(data)
		return conn:write(tostring(data));
	end
	if conn:ssl() then
		session.secure = true; -- direct TLS (e.g. behind mod_net_multiplex); not the default path
	end
	if opt_keepalives then conn:setoption("keepalive", true); end

	local stream = new_xmpp_stream(session, stream_callbacks, opt_unauthed_size);
	session.stream = stream;
	function session.reset_stream()
		session.notopen = true;
		session.stream:reset();
	end
	function session.data(data)
		local ok, err = stream:feed(data);
		if ok or session.closing then return; end
		if err == "stanza-too-large" then
			session:close({ condition = "policy-violation", text = "XML stanza is too big",
				extra = st.stanza("stanza-too-big", { xmlns = "urn:xmpp:errors" }) });
		else
			session.log("debug", "Invalid XML (%s)", tostring(err));
			session:close("not-well-formed");
		end
	end
	session.dispatch_stanza = stream_callbacks.handlestanza;

	if opt_auth_timeout and opt_auth_timeout > 0 then
		session.auth_timer = timer.add_task(opt_auth_timeout, function ()
			session.auth_timer = nil;
			if session.type ~= "component" and not session.closing and not session.destroyed then
				session.log("info", "Not authenticated after %gs, closing", opt_auth_timeout);
				session:close({ condition = "connection-timeout", text = "Authentication timed out" });
			end
		end);
	end

	session.log("info", "Incoming XEP-0225 connection from %s", session.ip or "?");
	sessions[conn] = session;
end

function listener.onincoming(conn, data)
	local session = sessions[conn];
	if session and not session.closing then
		session.data(data);
	end
end

function listener.onstatus(conn, status)
	if status == "ssl-handshake-complete" then
		local session = sessions[conn];
		if session and session.secure == false then
			session.secure = true;
			local sock = conn:socket();
			local info = sock and sock.info and sock:info();
			if type(info) == "table" then
				session.log("info", "Stream encrypted (%s with %s)", tostring(info.protocol), tostring(info.cipher));
			end
		end
	end
end

function listener.ondisconnect(conn, err)
	local session = sessions[conn];
	if not session then return; end
	sessions[conn] = nil;
	stop_auth_timer(session);
	unbind_all(session);
	session.log("info", "Disconnected (%s)", tostring(err or "closed"));
	session.conn = nil;
	session.closing = true;
	session.destroyed = true;
	session.send = function () return false; end
	module:fire_event("component-xep0225-disconnected", { session = session });
end

function listener.ondetach(conn)
	sessions[conn] = nil;
end

function listener.onreadtimeout(conn)
	local session = sessions[conn];
	if session and not session.notopen and not session.closing then
		session.send(" "); -- whitespace keepalive
		return true;
	end
end

module:provides("net", {
	name = "component_xep0225";
	private = true;
	listener = listener;
	encryption = "starttls";
	-- no default_port: the operator sets component_xep0225_ports
});

-- Shutdown: close every stream with system-shutdown and wait until the bytes are out.
module:hook("server-stopping", function (event)
	local portmanager = require "core.portmanager";
	for _, service in pairs(module.items["net-provider"] or {}) do
		portmanager.unregister_service(service.name, service);
	end
	if next(sessions) == nil then return; end

	local reason = event and event.reason;
	-- server-stopping runs inside prosody.main_thread (an async runner) when started by a
	-- signal or prosodyctl; only wait when that is so.
	local can_wait = async.ready();
	local wait, done;
	if can_wait then
		wait, done = async.waiter(1, true);
	end
	local finished = false;
	local function finish()
		if finished then return; end
		finished = true;
		if done then done(); end
	end
	if can_wait then
		module:hook("component-xep0225-disconnected", function ()
			if next(sessions) == nil then finish(); end
		end);
	end

	for _, session in pairs(sessions) do
		session:close({ condition = "system-shutdown", text = reason });
	end

	if can_wait and next(sessions) ~= nil then
		module:log("info", "Waiting for component streams to close");
		timer.add_task(opt_close_timeout, finish);
		wait();
	end
end, -90);
