-- mod_component_xep0225: XEP-0225 (Component Connections) server side for Prosody
--
-- A component connects like a client (jabber:client stream, 'to' = a VirtualHost),
-- negotiates STARTTLS with that VirtualHost's certificate, authenticates with SASL
-- as a domain identity (the 'component_secret' of `Component "<identity>"`), and then
-- binds any number of hostnames (urn:xmpp:component:0). Every bindable hostname is
-- declared as `Component "<hostname>" "component_xep0225"`.
--
-- Runs on Prosody 0.12 and 13 (see the Compatibility section of README.md).

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
local errors = require "util.error";
local time_now = require "util.time".now;
local configmanager = require "core.configmanager";
local certmanager = require "core.certmanager";

local hosts = prosody.hosts;
local core_process_stanza = prosody.core_process_stanza;
local rawgetopt = configmanager.rawget;

local xmlns_tls = "urn:ietf:params:xml:ns:xmpp-tls";
local xmlns_sasl = "urn:ietf:params:xml:ns:xmpp-sasl";
local xmlns_sasl_cb = "urn:xmpp:sasl-cb:0"; -- XEP-0440
local xmlns_xmpp_streams = "urn:ietf:params:xml:ns:xmpp-streams";
local xmlns_component = "urn:xmpp:component:0";
local xmlns_prosody_component = "xmpp:prosody.im/protocol/component";

local log = module._log;

-- Options (global section) --------------------------------------------------------------
-- Numbers are bounded here (0.12's get_option_number has no min/max; 13's has).

local function deprecated(old_name, new_name)
	module:log("warn", "Option '%s' is deprecated, use '%s' instead", old_name, new_name);
end

local function opt_number(name, old_name, default, min, max)
	local value = module:get_option_number(name);
	if value == nil and old_name then
		value = module:get_option_number(old_name);
		if value ~= nil then deprecated(old_name, name); end
	end
	if value == nil then return default; end
	if min and value < min then
		module:log("warn", "Option '%s' out of bounds: %g < %g, using %g", name, value, min, min);
		value = min;
	elseif max and value > max then
		module:log("warn", "Option '%s' out of bounds: %g > %g, using %g", name, value, max, max);
		value = max;
	end
	return value;
end

local opt_auth_timeout = opt_number("component_xep0225_auth_timeout", nil, 30, 0, 3600);
local opt_unauthed_size = opt_number("component_xep0225_unauthed_stanza_size_limit",
	"component_xep0225_unauthed_max_stanza_size", 10000, 1000, 1024*1024);
local opt_max_stanza_size = opt_number("component_xep0225_stanza_size_limit",
	"component_xep0225_max_stanza_size",
	module:get_option_number("component_stanza_size_limit", 1024*512), 10000, 64*1024*1024);
local opt_max_child_elements = opt_number("component_xep0225_max_child_elements", nil, 25000, 1, 10000000);
local opt_max_sasl_failures = opt_number("component_xep0225_max_sasl_failures", nil, 3, 1, 100);
local opt_close_timeout = opt_number("component_xep0225_close_timeout", nil, 5, 0, 300);
local opt_max_send_buffer = opt_number("component_xep0225_max_send_buffer_size", nil, 16*1024*1024,
	64*1024, 1024*1024*1024);
local opt_keepalives = module:get_option_boolean("component_xep0225_tcp_keepalives",
	module:get_option_boolean("tcp_keepalives", true));

local opt_require_encryption = module:get_option_boolean("component_xep0225_require_encryption");
if opt_require_encryption == nil then
	local old = module:get_option_boolean("component_xep0225_allow_unencrypted");
	if old ~= nil then
		deprecated("component_xep0225_allow_unencrypted", "component_xep0225_require_encryption");
		opt_require_encryption = not old;
	else
		opt_require_encryption = true;
	end
end
if not opt_require_encryption then
	module:log("warn", "component_xep0225_require_encryption = false: components may authenticate without TLS (SCRAM only). Do not use this in production.");
end

-- Core's option (mod_saslauth reads it too): mechanisms never offered nor accepted.
local disabled_mechanisms = module:get_option_set("disable_sasl_mechanisms", { "DIGEST-MD5" });

-- Metrics --------------------------------------------------------------------------------

local m_streams = module:metric("gauge", "streams", "", "XEP-0225 component streams", { "state" });
local m_bound = module:metric("gauge", "bound_hostnames", "", "Hostnames bound by XEP-0225 component streams");
local m_queued = module:metric("gauge", "queued", "bytes",
	"Bytes waiting to be written to XEP-0225 component streams (all streams)");
local m_binds = module:metric("counter", "binds", "", "Hostname binds");
local m_unbinds = module:metric("counter", "unbinds", "", "Hostname unbinds (explicit or at disconnect)");
local m_bounces = module:metric("counter", "bounces", "", "Stanzas bounced instead of delivered", { "reason" });
local m_auth_failures = module:metric("counter", "auth_failures", "", "Failed SASL authentications");

-- Shared state. `bindable[host] = true` for every host that declares this module;
-- `bound[host] = session` for every hostname currently bound to a stream.
-- module:shared() keeps them across a module reload.
local bindable = module:shared("bindable");
local bound = module:shared("bound");
local sessions = module:shared("sessions"); -- conn -> session
local host_modules = {}; -- host -> the per-host module object from add_host (for set_status)
-- After a reload of the global module alone, per-host instances loaded before it stay.
for host, host_session in pairs(hosts) do
	local loaded = host_session.modules and host_session.modules.component_xep0225;
	if loaded and loaded.module and loaded.module.host == host then
		host_modules[host] = loaded.module;
	end
end

local tls_contexts = {}; -- server host -> context, or false when it could not be built
module:hook_global("config-reloaded", function () tls_contexts = {}; end);

module:hook("stats-update", function ()
	local unauthed, authed, queued, n_bound = 0, 0, 0, 0;
	for _, session in pairs(sessions) do
		if session.type == "component" then authed = authed + 1; else unauthed = unauthed + 1; end
		queued = queued + (session.queued or 0);
	end
	for _ in pairs(bound) do n_bound = n_bound + 1; end
	m_streams:with_labels("unauthenticated"):set(unauthed);
	m_streams:with_labels("authenticated"):set(authed);
	m_queued:with_labels():set(queued);
	m_bound:with_labels():set(n_bound);
end);

-- 13's util.stanza refuses to build an error reply to an error; never reply to errors or results.
local function error_reply(stanza, err_type, condition, text, by)
	local t = stanza.attr.type;
	if t == "error" or t == "result" then return nil; end
	return st.error_reply(stanza, err_type, condition, text, by);
end

-- Per-host part: routing for `Component "H" "component_xep0225"` ---------------------

local function set_host_status(host, level, text)
	local host_module = host_modules[host];
	if host_module then
		host_module:set_status(level, text);
	end
end

-- Bytes queued for a stream. The counter grows with every write and is reset when
-- net.server_epoll reports the buffer drained; above the cap it is replaced by the real
-- size of the connection's write buffer (a string, 0.12's chunk list or 13's
-- util.dbuffer), measured at most every 100 ms.
local function queued_bytes(session)
	local queued = session.queued or 0;
	if queued <= opt_max_send_buffer then return queued; end
	local now = time_now();
	if session.queued_measured and now - session.queued_measured < 0.1 then return queued; end
	session.queued_measured = now;
	local buffer = session.conn and session.conn.writebuffer;
	local exact;
	if buffer == nil then
		exact = 0;
	elseif type(buffer) == "string" then
		exact = #buffer;
	elseif type(buffer) == "table" then
		if type(buffer.length) == "function" then
			exact = buffer:length();
		else
			exact = 0;
			for i = 1, #buffer do exact = exact + #buffer[i]; end
		end
	end
	if exact then session.queued = exact; end
	return session.queued;
end

function module.add_host(module)
	if module:get_host_type() ~= "component" then
		error("mod_component_xep0225 must be loaded as a component: Component \"" .. module.host
			.. "\" \"component_xep0225\"", 0);
	end
	local host = module.host;
	bindable[host] = true;
	host_modules[host] = module;
	if bound[host] then
		module:set_status("info", "Bound by " .. tostring(bound[host].identity));
	else
		module:set_status("warn", "Not bound");
	end

	local function bounce(event, err_type, condition, text, reason)
		local stanza = event.stanza;
		local reply = error_reply(stanza, err_type, condition, text, host);
		m_bounces:with_labels(reason):add(1);
		if not reply then return true; end -- never answer errors or results
		if condition == "remote-server-timeout" then
			reply:tag("not-connected", { xmlns = xmlns_prosody_component }):up();
		end
		module:send(reply);
		return true;
	end

	local function handle_stanza(event)
		local session = bound[host];
		local stanza = event.stanza;
		if session and not session.closing then
			if queued_bytes(session) > opt_max_send_buffer then
				if not session.send_buffer_full then
					session.send_buffer_full = true; -- warn once per episode, not per stanza
					session.log("warn", "More than %d bytes wait to be written (component not reading?); bouncing stanzas to %s",
						opt_max_send_buffer, host);
				end
				session.log("debug", "Send buffer full, bouncing: %s", stanza:top_tag());
				return bounce(event, "wait", "resource-constraint", "Component is not reading its stream",
					"send_buffer_full");
			end
			if session.send_buffer_full then
				session.send_buffer_full = nil;
				session.log("info", "Send buffer below the limit again, delivering to %s", host);
			end
			stanza.attr.xmlns = nil;
			session.send(stanza);
			return true;
		end
		module:log("debug", "Hostname not bound, bouncing: %s", stanza:top_tag());
		return bounce(event, "wait", "remote-server-timeout", "Component unavailable", "unbound");
	end

	for _, kind in ipairs({ "iq", "message", "presence" }) do
		for _, to_type in ipairs({ "bare", "full", "host" }) do
			module:hook(kind .. "/" .. to_type, handle_stanza, -1);
		end
	end

	function module.unload()
		-- rawget: a per-host module object inherits fields from the global one, whose
		-- 'reloading' stays set after a reload of the global module alone.
		if rawget(module, "reloading") then
			return; -- keep the binding: the reloaded code finds it in the shared tables
		end
		bindable[host] = nil;
		host_modules[host] = nil;
		local holder = bound[host];
		if holder then
			holder.log("info", "%s is no longer served here (module unloaded), closing the stream", host);
			holder:close({ condition = "host-gone", text = host .. " is no longer served by this server" });
		end
		for _, session in pairs(sessions) do
			if session.identity == host then
				session:close({ condition = "not-authorized", text = "Identity " .. host .. " was removed" });
			end
		end
	end
end

-- Stream part -------------------------------------------------------------------------

local listener = {};
local stream_callbacks = { default_ns = "jabber:client" };
local runner_callbacks = {};

local function unbind_all(session)
	if not session.bound then return; end
	for host in pairs(session.bound) do
		if bound[host] == session then
			bound[host] = nil;
			m_unbinds:with_labels():add(1);
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
		session:open_stream(session.server_host);
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

-- The VirtualHost's own settings, else its parent domain's (as mod_tls does), else global.
local function get_tls_context(host)
	local ctx = tls_contexts[host];
	if ctx ~= nil then return ctx or nil; end
	local NULL = {};
	local parent = host:match("%.(.*)$");
	local parent_ssl = parent and rawgetopt(parent, "ssl") or NULL;
	local host_ssl = rawgetopt(host, "ssl") or parent_ssl;
	local parent_c2s = parent and rawgetopt(parent, "c2s_ssl") or NULL;
	local host_c2s = rawgetopt(host, "c2s_ssl") or parent_c2s;
	local err;
	ctx, err = certmanager.create_context(host, "server", host_c2s, host_ssl, rawgetopt("*", "c2s_ssl") or NULL);
	if not ctx then
		module:log("error", "No TLS context for %s: %s", host, err);
	end
	tls_contexts[host] = ctx or false;
	return ctx;
end

local function tls_info(conn)
	if conn.ssl_info then
		local info = conn:ssl_info(); -- 13
		if type(info) == "table" then return info; end
	end
	local sock = conn.socket and conn:socket();
	local info = sock and sock.info and sock:info();
	if type(info) == "table" then return info; end
end

-- SASL --------------------------------------------------------------------------------

-- A password that cannot be guessed, returned for unknown identities so that SCRAM
-- does not reveal whether an identity exists (the exchange fails at the proof).
local decoy_secret = uuid_generate() .. uuid_generate();

local function secret_of(identity)
	-- rawget: only the Component block's own value, never the global section's.
	-- On 13 Credential()/FileContents() yield a string (the file's contents), or an
	-- util.error object when the credential cannot be read.
	local secret = rawgetopt(identity, "component_secret");
	if type(secret) == "string" and secret ~= "" then return secret; end
	if secret ~= nil and errors.is_error(secret) then
		module:log("warn", "component_secret of %s cannot be used: %s", identity, tostring(secret.text));
	end
	return nil;
end

-- An identity authenticates only while it is an active host running this module
-- (`enabled = false`, a deactivated host or an unloaded module do not).
local function identity_is_valid(identity)
	if identity == nil then return false; end
	local host = hosts[identity];
	return host ~= nil and host.type == "component"
		and host.modules ~= nil and host.modules.component_xep0225 ~= nil
		and rawgetopt(identity, "component_module") == "component_xep0225"
		and secret_of(identity) ~= nil;
end

-- Does this util.sasl offer SCRAM-*-PLUS with 'tls-exporter'? (13: yes; 0.12: only
-- 'tls-unique', which TLS 1.3 does not have, so no -PLUS there.) A profile with any
-- channel-binding handler makes SCRAM refuse the gs2 flag 'y', so handlers are added
-- only where -PLUS can really be offered.
local tls_exporter_supported = (function ()
	local ok, supported = pcall(function ()
		local probe = new_sasl("example.invalid", {
			plain = function () end;
			mechanisms = { ["SCRAM-SHA-256-PLUS"] = true };
		});
		if not probe.add_cb_handler then return false; end
		probe:add_cb_handler("tls-exporter", function () end);
		return probe:mechanisms()["SCRAM-SHA-256-PLUS"] == true;
	end);
	return ok and supported or false;
end)();

local function tls_exporter(conn)
	if not conn or not conn.ssl_exportkeyingmaterial then return nil; end
	return conn:ssl_exportkeyingmaterial("EXPORTER-Channel-Binding", 32, "");
end

local function new_sasl_handler(session)
	local mechanisms = { ["SCRAM-SHA-1"] = true, ["SCRAM-SHA-256"] = true };
	if session.secure then
		mechanisms["PLAIN"] = true;
	end
	local channel_binding;
	if session.secure and tls_exporter_supported then
		-- RFC 9266: tls-exporter only under TLS 1.3 (as 13's mod_saslauth does)
		local info = session.conn and tls_info(session.conn);
		if info and info.protocol == "TLSv1.3" and tls_exporter(session.conn) then
			mechanisms["SCRAM-SHA-1-PLUS"] = true;
			mechanisms["SCRAM-SHA-256-PLUS"] = true;
			channel_binding = "tls-exporter";
		end
	end
	for mechanism in pairs(mechanisms) do
		if disabled_mechanisms:contains(mechanism) then mechanisms[mechanism] = nil; end
	end
	local profile = {
		nodeprep = false; -- the authcid is a domain, not a node
		mechanisms = mechanisms;
		plain = function (_, authcid)
			local identity = authcid and nameprep(authcid);
			if identity_is_valid(identity) then
				return secret_of(identity), true;
			end
			session.log("info", "SASL attempt for unknown or inactive identity %q", tostring(authcid));
			return decoy_secret, true;
		end;
	};
	local handler = new_sasl(session.server_host, profile);
	if channel_binding then
		local conn = session.conn;
		handler:add_cb_handler(channel_binding, function () return tls_exporter(conn); end);
	end
	return handler, channel_binding;
end

local function offered_mechanisms(session)
	local handler, channel_binding = new_sasl_handler(session);
	local list = {};
	for mech in pairs(handler:mechanisms()) do list[#list + 1] = mech; end
	table.sort(list);
	local has_plus = false;
	for _, mech in ipairs(list) do
		if mech:find("%-PLUS$") then has_plus = true; end
	end
	return list, has_plus and channel_binding or nil;
end

local function sasl_reply(name, data)
	local reply = st.stanza(name, { xmlns = xmlns_sasl });
	if data then
		if data == "" then reply:text("=") else reply:text(base64.encode(data)); end
	end
	return reply;
end

local function sasl_failure(session, condition, text, authcid)
	local reply = st.stanza("failure", { xmlns = xmlns_sasl }):tag(condition):up();
	if text then reply:tag("text"):text(text):up(); end
	session.send(reply);
	session.sasl_handler = nil;
	if condition ~= "aborted" then
		m_auth_failures:with_labels():add(1);
		-- For fail2ban-style tooling: identity, client IP and reason; never the secret.
		session.log("info", "Authentication failed for identity %q from %s: %s", tostring(authcid or "?"),
			session.ip or "?", condition);
		module:fire_event("component-xep0225-authentication-failure", {
			session = session; ip = session.ip; identity = authcid; condition = condition; text = text;
		});
	end
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
		return sasl_failure(session, "not-authorized", nil, identity);
	end
	session.sasl_handler = nil;
	stop_auth_timer(session);
	session.identity = identity;
	session.host = identity;
	session.type = "component";
	session.component_xep0225 = true;
	session.bound = {};
	session.log("info", "Authenticated as %s (%s) from %s", identity, session.sasl_mechanism or "?", session.ip or "?");
	module:fire_event("component-xep0225-authentication-success", {
		session = session; ip = session.ip; identity = identity; mechanism = session.sasl_mechanism;
	});
	session.send(sasl_reply("success", data));
	session.stream:set_stanza_size_limit(opt_max_stanza_size, opt_max_child_elements);
	session:reset_stream();
end

-- The authcid and authzid of a client's first SASL message (PLAIN or SCRAM), for the
-- authzid check, which util.sasl leaves to the caller (0.12 does not pass it on).
local function decode_saslname(s)
	if not s then return nil; end
	return (s:gsub("=2C", ","):gsub("=3D", "="));
end

local function sasl_names(mechanism, message)
	if mechanism == "PLAIN" then
		local authzid, authcid = message:match("^([^%z]*)%z([^%z]*)%z");
		return authcid, authzid;
	elseif mechanism:find("^SCRAM%-") then
		local authzid, authcid = message:match("^[nyp][^,]*,([^,]*),[^,]*n=([^,]*),");
		authzid = authzid and authzid:match("^a=(.*)$");
		return decode_saslname(authcid), decode_saslname(authzid);
	end
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
	if not session.sasl_first_seen and message and message ~= "" then
		session.sasl_first_seen = true;
		local authcid, authzid = sasl_names(session.sasl_mechanism, message);
		session.sasl_authcid = authcid;
		if authzid and authzid ~= "" then
			local prepped_authzid, prepped_authcid = nameprep(authzid), authcid and nameprep(authcid);
			if not prepped_authzid or prepped_authzid ~= prepped_authcid then
				return sasl_failure(session, "invalid-authzid",
					"The authorization identity must be empty or equal to the authentication identity", authcid);
			end
		end
	end
	local status, ret, err_text = session.sasl_handler:process(message);
	if status == "challenge" then
		session.send(sasl_reply("challenge", ret or ""));
	elseif status == "success" then
		sasl_success(session, ret);
	else
		session.log("debug", "SASL failure: %s%s", tostring(ret), err_text and (" (" .. err_text .. ")") or "");
		sasl_failure(session, ret or "not-authorized", nil, session.sasl_authcid);
	end
end

-- Features ----------------------------------------------------------------------------

local function add_mechanisms(session, features)
	local list, channel_binding = offered_mechanisms(session);
	if #list == 0 then return; end
	features:tag("mechanisms", { xmlns = xmlns_sasl });
	for _, mech in ipairs(list) do
		features:text_tag("mechanism", mech);
	end
	features:up();
	if channel_binding then
		features:tag("sasl-channel-binding", { xmlns = xmlns_sasl_cb })
			:tag("channel-binding", { type = channel_binding }):up():up();
	end
end

local function send_features(session)
	local features = st.stanza("stream:features");
	if session.type == "component" then
		features:tag("bind", { xmlns = xmlns_component }):tag("required"):up():up();
	elseif not session.secure then
		if session.conn and session.conn.starttls and get_tls_context(session.server_host) then
			features:tag("starttls", { xmlns = xmlns_tls });
			if opt_require_encryption then features:tag("required"):up(); end
			features:up();
		end
		if not opt_require_encryption then
			add_mechanisms(session, features);
		end
	else
		add_mechanisms(session, features);
	end
	if not features.tags[1] then
		-- Nothing the component could do next: say so now rather than at the auth timeout.
		if session.secure then
			session.log("warn", "No stream features to offer on secure session: no SASL mechanism left (check disable_sasl_mechanisms)");
		else
			session.log("warn", "No stream features to offer on insecure session: no TLS for %s and component_xep0225_require_encryption is on",
				tostring(session.server_host));
		end
		return session:close({ condition = "undefined-condition", text = "No stream features to proceed with" });
	end
	session.send(features);
end

-- Bind / unbind -----------------------------------------------------------------------

local function iq_error(session, stanza, err_type, condition, text)
	local reply = error_reply(stanza, err_type, condition, text);
	if reply then session.send(reply); end
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
		m_binds:with_labels():add(1);
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
	m_unbinds:with_labels():add(1);
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
		-- false = negotiating; only listener.onstatus("ssl-handshake-complete") makes it true,
		-- never a stream header (which could arrive in the clear, pipelined after <starttls/>).
		session.secure = false;
		session.log("debug", "TLS negotiation started");
		return;
	end
	if xmlns == xmlns_sasl then
		if not session.secure and opt_require_encryption then
			if name == "auth" then
				session.send(st.stanza("failure", { xmlns = xmlns_sasl }):tag("encryption-required"):up());
				return;
			end
			return session:close({ condition = "not-authorized", text = "STARTTLS is required first" });
		end
		if name == "auth" then
			session.sasl_handler = nil; -- a new <auth/> aborts the exchange in progress (RFC 6120 6.4.4)
			session.sasl_first_seen, session.sasl_authcid = nil, nil;
			local mechanism = stanza.attr.mechanism;
			local handler = new_sasl_handler(session);
			if not mechanism or disabled_mechanisms:contains(mechanism)
				or not handler:mechanisms()[mechanism] or not handler:select(mechanism) then
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
			iq_error(session, stanza, "modify", "bad-request", "Bind and unbind use type='set'");
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
		iq_error(session, stanza, "modify", "bad-request", "Stanzas from a component need a 'to' address");
		return;
	end
	return core_process_stanza(session, stanza);
end

local function stream_opened(session, attr)
	if not attr.to then
		return session:close({ condition = "improper-addressing", text = "A 'to' attribute is required on stream headers" });
	end
	local to = nameprep(attr.to);
	if not to then
		return session:close({ condition = "improper-addressing", text = "A valid 'to' attribute is required on stream headers" });
	end
	if session.server_host and to ~= session.server_host then
		return session:close({ condition = "not-authorized",
			text = "The 'to' attribute must remain the same across stream restarts" });
	end
	session.version = tonumber(attr.version) or 0;
	session.streamid = uuid_generate();
	if not (hosts[to] and hosts[to].type == "local") then
		return session:close({ condition = "host-unknown", text = "'to' must name a VirtualHost of this server" });
	end
	session.server_host = to;
	session:open_stream(to);
	if session.destroyed or session.closing then return; end
	session.notopen = nil;
	if session.version < 1 then
		return session:close({ condition = "unsupported-version", text = "XEP-0225 needs version='1.0'" });
	end
	send_features(session);
end

-- Everything a stream delivers runs in the session's async runner, as in mod_c2s.
local function process(session, item)
	if st.is_stanza(item) then
		if session.closing then return; end
		if session.type == "component" then
			return handle_authed(session, item);
		end
		return handle_unauthed(session, item);
	elseif item.stream == "opened" then
		return stream_opened(session, item.attr);
	elseif item.stream == "closed" then
		session.log("debug", "Received </stream:stream>");
		return session:close();
	end
end

function runner_callbacks:ready()
	if self.data.conn then self.data.conn:resume(); end
end

function runner_callbacks:waiting()
	if self.data.conn then self.data.conn:pause(); end
end

function runner_callbacks:error(err)
	(self.data.log or log)("error", "Traceback[component_xep0225]: %s", err);
end

function stream_callbacks.handlestanza(session, stanza)
	if session.closing then return; end
	session.thread:run(stanza);
end

function stream_callbacks.streamopened(session, attr)
	session.thread:run({ stream = "opened", attr = attr });
end

function stream_callbacks.streamclosed(session, attr)
	session.thread:run({ stream = "closed", attr = attr });
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
		base_type = "component_xep0225";
		conn = conn;
		ip = conn:ip();
		notopen = true;
		queued = 0;
	};
	session.id = "xep0225" .. tostring(session):match("%x+$"):lower();
	session.log = logger.init(session.id);
	session.close = session_close;
	function session.send(data)
		data = tostring(data);
		session.queued = session.queued + #data;
		return conn:write(data);
	end
	if conn:ssl() then
		session.secure = true; -- direct TLS; this listener is STARTTLS only, so not the normal path
		session.encrypted = true;
	end
	if opt_keepalives then conn:setoption("keepalive", true); end

	-- max_elements: honoured where util.xmppstream supports it (0.12.3 via
	-- set_stanza_size_limit's third argument; ignored where it does not).
	local stream = new_xmpp_stream(session, stream_callbacks, opt_unauthed_size, { max_elements = opt_max_child_elements });
	stream:set_stanza_size_limit(opt_unauthed_size, opt_max_child_elements);
	session.stream = stream;
	function session.reset_stream()
		session.notopen = true;
		session.stream:reset();
	end
	session.thread = async.runner(function (item)
		return process(session, item);
	end, runner_callbacks, session);
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

	if opt_auth_timeout > 0 then
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
			session.encrypted = true;
			local info = tls_info(conn);
			if info then
				session.log("info", "Stream encrypted (%s with %s)", tostring(info.protocol), tostring(info.cipher));
			else
				session.log("info", "Stream encrypted");
			end
		end
	end
end

function listener.ondrain(conn)
	local session = sessions[conn];
	if session then
		session.queued = 0; -- the write buffer is empty
		session.queued_measured = nil;
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
	private = true; -- default interfaces: local_interfaces
	listener = listener;
	encryption = "starttls";
	-- no default_port: the operator sets component_xep0225_ports
});

-- A real unload (not a reload) ends every component stream.
function module.unload()
	if module.reloading then return; end
	for _, session in pairs(sessions) do
		session:close({ condition = "undefined-condition", text = "The XEP-0225 service was unloaded" });
	end
end

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
