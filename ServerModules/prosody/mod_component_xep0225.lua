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
local jid_split = require "util.jid".split;
local jid_prep = require "util.jid".prep;
local uuid_generate = require "util.uuid".generate;
local logger = require "util.logger";
local timer = require "util.timer";
local async = require "util.async";
local errors = require "util.error";
local time_now = require "util.time".now;
local configmanager = require "core.configmanager";
local certmanager = require "core.certmanager";
local modulemanager = require "core.modulemanager";
local promise = require "util.promise";

local hosts = prosody.hosts;
local core_process_stanza = prosody.core_process_stanza;
local core_post_stanza = prosody.core_post_stanza;
local full_sessions = prosody.full_sessions;
local rawgetopt = configmanager.rawget;

local xmlns_tls = "urn:ietf:params:xml:ns:xmpp-tls";
local xmlns_sasl = "urn:ietf:params:xml:ns:xmpp-sasl";
local xmlns_sasl_cb = "urn:xmpp:sasl-cb:0"; -- XEP-0440
local xmlns_xmpp_streams = "urn:ietf:params:xml:ns:xmpp-streams";
local xmlns_component = "urn:xmpp:component:0";
local xmlns_prosody_component = "xmpp:prosody.im/protocol/component";
local xmlns_cmr = "urn:xmpp:cmr:0"; -- XEP-0354
local xmlns_cxf = "urn:xmpp:cxf"; -- XEP-0051
local xmlns_disco_info = "http://jabber.org/protocol/disco#info";
local xmlns_sm = "urn:xmpp:sm:3"; -- XEP-0198, acknowledgements only
local xmlns_stanzas = "urn:ietf:params:xml:ns:xmpp-stanzas";
-- This project's balancing extension of XEP-0225 (shared with the SDK and its reference
-- server): <hostname xmlns:b='urn:xmpp:component:balancing:0' b:weight='3'>, and the
-- name of the 'affinity' algorithm.
local xmlns_balancing = "urn:xmpp:component:balancing:0";

-- Routing algorithms for a domain bound by several instances: XEP-0354's four, plus
-- 'affinity' (one remote full JID stays on one instance), which is this module's own.
local algorithm_urns = {
	affinity = "urn:xmpp:component:balancing:affinity";
	all = "urn:xmpp:cmr:all";
	mostactive = "urn:xmpp:cmr:mostactive";
	roundrobin = "urn:xmpp:cmr:roundrobin";
	weighted = "urn:xmpp:cmr:weighted";
};
local algorithm_names = { "affinity", "all", "mostactive", "roundrobin", "weighted" };
local default_algorithm = "affinity";

-- "roundrobin" or "urn:xmpp:cmr:roundrobin" -> "roundrobin"; nil for anything else.
local function algorithm_name(text)
	if type(text) ~= "string" then return nil; end
	if algorithm_urns[text] then return text; end
	for name, urn in pairs(algorithm_urns) do
		if urn == text then return name; end
	end
	return nil;
end

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
-- Several instances of one domain (domain/resource binds) and their balancing.
local opt_max_instances = opt_number("component_xep0225_max_instances", nil, 64, 1, 10000);
local opt_iq_timeout = opt_number("component_xep0225_iq_timeout", nil, 300, 10, 86400);
local opt_max_pending_iqs = opt_number("component_xep0225_max_pending_iqs", nil, 10000, 10, 1000000);
local opt_affinity_timeout = opt_number("component_xep0225_affinity_timeout", nil, 900, 10, 86400);
local opt_max_affinity = opt_number("component_xep0225_max_affinity_entries", nil, 100000, 100, 10000000);
local opt_transfer_timeout = opt_number("component_xep0225_transfer_timeout", nil, 10, 1, 300);
local opt_max_unacked = opt_number("component_xep0225_max_unacked_stanzas", nil, 10000, 100, 1000000);

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

local m_dropped = module:metric("counter", "dropped", "", "Stanzas to a component domain dropped (never answered)",
	{ "reason" });
local m_cmr_changes = module:metric("counter", "routing_changes", "", "Routing algorithm changes (XEP-0354 set)");
local m_rerouted = module:metric("counter", "rerouted", "",
	"Unacknowledged stanzas (XEP-0198) routed again after their stream ended");

-- Shared state, kept across a module reload by module:shared():
-- `bindable[host] = true` for every host that declares this module;
-- `domains[host]` = the group of instances bound to that domain (see new_group);
-- `pending_iqs[key]` = which stream sent an IQ request still waiting for its answer;
-- `routing_config[host]` / `routing_locked[host]` = the domain's configured algorithm;
-- `routing_override[host]` = an algorithm set by an admin in the shell (until restart);
-- a component's XEP-0354 set lives in the domain's group (until its last instance leaves).
local bindable = module:shared("bindable");
local domains = module:shared("domains");
local pending_iqs = module:shared("pending_iqs");
local routing_config = module:shared("routing_config");
local routing_locked = module:shared("routing_locked");
local routing_override = module:shared("routing_override");
local counters = module:shared("counters"); -- activity sequence, stamped-id sequence
counters.activity = counters.activity or 0;
counters.stamp = counters.stamp or 0;
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
	for _, group in pairs(domains) do n_bound = n_bound + #group.list; end
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

-- Instances ---------------------------------------------------------------------------
-- A domain may be bound as `domain` and as any number of `domain/resource`, on one stream
-- or on several. Each binding is an instance:
--   inst = { session, domain, resource (or nil), hostname ("domain" or "domain/resource"),
--            weight, current (smooth weighted round robin), activity, bound }
-- A group keeps a domain's instances in bind order:
--   group = { host, list = { inst... }, by_name = { [hostname] = inst }, rr (cursor),
--             affinity = { [remote JID] = { inst, local_session, seen } }, n_affinity }
-- A session keeps its own: session.instances[hostname] = inst and
-- session.domains[domain] = { [hostname] = inst }.

local function algorithm_of(host)
	local group = domains[host];
	return group and group.override or routing_override[host] or routing_config[host] or default_algorithm;
end

local function set_host_status(host, level, text)
	local host_module = host_modules[host];
	if host_module then
		host_module:set_status(level, text);
	end
end

local function update_host_status(host)
	local group = domains[host];
	local n = group and #group.list or 0;
	if n == 0 then
		return set_host_status(host, "warn", "Not bound");
	end
	local identities, seen = {}, {};
	for _, inst in ipairs(group.list) do
		local identity = tostring(inst.session.identity);
		if not seen[identity] then seen[identity] = true; identities[#identities + 1] = identity; end
	end
	local text = "Bound by " .. table.concat(identities, ", ");
	if n > 1 or group.list[1].resource then
		text = text .. (" (%d instance%s, %s)"):format(n, n == 1 and "" or "s", algorithm_of(host));
	end
	set_host_status(host, "info", text);
end

local function session_holds(session, host)
	local held = session.domains and session.domains[host];
	return held ~= nil and next(held) ~= nil;
end

-- Is the stream able to take stanzas for this instance?
local function inst_live(inst)
	local session = inst.session;
	return inst.bound and not session.closing and not session.destroyed;
end

local function add_instance(session, host, resource, weight)
	local group = domains[host];
	if not group then
		group = { host = host, list = {}, by_name = {}, rr = 0, affinity = {}, n_affinity = 0 };
		domains[host] = group;
	end
	local hostname = resource and (host .. "/" .. resource) or host;
	local inst = {
		session = session, domain = host, resource = resource, hostname = hostname,
		weight = weight or 1, current = 0, activity = 0, bound = true,
	};
	group.list[#group.list + 1] = inst;
	group.by_name[hostname] = inst;
	session.instances[hostname] = inst;
	local held = session.domains[host];
	if not held then held = {}; session.domains[host] = held; end
	held[hostname] = inst;
	m_binds:with_labels():add(1);
	update_host_status(host);
	session.log("info", "Bound %s%s", hostname, weight and (" (weight " .. weight .. ")") or "");
	return inst;
end

-- Removes an instance at once: nothing more is routed to it, and the remote JIDs that
-- were held on it (affinity) are spread over the other instances from the next stanza on.
local function remove_instance(inst, why)
	if not inst.bound then return; end
	inst.bound = false;
	local session, host, hostname = inst.session, inst.domain, inst.hostname;
	if session.instances then session.instances[hostname] = nil; end
	local held = session.domains and session.domains[host];
	if held then
		held[hostname] = nil;
		if next(held) == nil then session.domains[host] = nil; end
	end
	local group = domains[host];
	if group then
		group.by_name[hostname] = nil;
		for i = #group.list, 1, -1 do
			if group.list[i] == inst then table.remove(group.list, i); end
		end
		if #group.list == 0 then
			domains[host] = nil;
		else
			for remote, entry in pairs(group.affinity) do
				if entry.inst == inst then
					group.affinity[remote] = nil;
					group.n_affinity = group.n_affinity - 1;
				end
			end
		end
	end
	m_unbinds:with_labels():add(1);
	update_host_status(host);
	session.log("info", "Unbound %s%s", hostname, why and (" (" .. why .. ")") or "");
end

local function unbind_all(session, why)
	if not session.instances then return; end
	for _, inst in pairs(session.instances) do
		remove_instance(inst, why);
	end
	session.instances = {};
	session.domains = {};
end

-- Choosing an instance -----------------------------------------------------------------

local function next_round_robin(group)
	local list = group.list;
	group.rr = group.rr % #list + 1;
	return list[group.rr];
end

-- Smooth weighted round robin (as nginx): over every run of sum(weights) picks, each
-- instance is chosen exactly `weight` times, interleaved.
local function next_weighted(group)
	local best, total = nil, 0;
	for _, inst in ipairs(group.list) do
		inst.current = inst.current + inst.weight;
		total = total + inst.weight;
		if not best or inst.current > best.current then best = inst; end
	end
	best.current = best.current - total;
	return best;
end

-- The instance whose stream sent a stanza from the domain most recently (the first
-- bound while none has sent anything).
local function most_active(group)
	local best;
	for _, inst in ipairs(group.list) do
		if not best or inst.activity > best.activity then best = inst; end
	end
	return best;
end

-- One remote full JID stays on one instance while both live: a local client until its
-- session ends, any other address until it has been idle for
-- component_xep0225_affinity_timeout or sends unavailable presence. New ones are spread
-- round-robin.
local function affinity_pick(group, from)
	local entry = group.affinity[from];
	if entry then
		if entry.inst.bound and full_sessions[from] == entry.local_session then
			entry.seen = time_now();
			return entry.inst;
		end
		group.affinity[from] = nil;
		group.n_affinity = group.n_affinity - 1;
	end
	local inst = next_round_robin(group);
	if group.n_affinity < opt_max_affinity then
		group.affinity[from] = { inst = inst, local_session = full_sessions[from], seen = time_now() };
		group.n_affinity = group.n_affinity + 1;
	elseif not group.affinity_full_logged then
		group.affinity_full_logged = true;
		module:log("warn", "More than %d remote JIDs held on instances of %s; new ones are not held (component_xep0225_max_affinity_entries)",
			opt_max_affinity, group.host);
	end
	return inst;
end

local function pick_instance(group, algorithm, stanza)
	local list = group.list;
	if #list == 1 then return list[1]; end
	if algorithm == "affinity" then
		return affinity_pick(group, stanza.attr.from or "");
	elseif algorithm == "weighted" then
		return next_weighted(group);
	elseif algorithm == "mostactive" then
		return most_active(group);
	end
	return next_round_robin(group); -- roundrobin, and the single choice under 'all'
end

-- IQ requests from instances, so that their answers return to the stream that asked ---

local function pending_key(jid, id)
	return jid .. "\0" .. id;
end

local function forget_pending(key, entry)
	pending_iqs[key] = nil;
	entry.session.n_pending = (entry.session.n_pending or 1) - 1;
end

-- Delivery -----------------------------------------------------------------------------

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

local function bounce(host, stanza, err_type, condition, text, reason)
	m_bounces:with_labels(reason):add(1);
	local reply = error_reply(stanza, err_type, condition, text, host);
	if not reply then return true; end -- never answer errors or results
	if condition == "remote-server-timeout" then
		reply:tag("not-connected", { xmlns = xmlns_prosody_component }):up();
	end
	if hosts[host] then
		core_post_stanza(hosts[host], reply);
	end
	return true;
end

-- Writes a stanza to an instance's stream; false when the stream is over its send buffer.
local function write_to(session, host, stanza, copy)
	if queued_bytes(session) > opt_max_send_buffer then
		if not session.send_buffer_full then
			session.send_buffer_full = true; -- warn once per episode, not per stanza
			session.log("warn", "More than %d bytes wait to be written (component not reading?); bouncing stanzas to %s",
				opt_max_send_buffer, host);
		end
		session.log("debug", "Send buffer full, bouncing: %s", stanza:top_tag());
		return false;
	end
	if session.send_buffer_full then
		session.send_buffer_full = nil;
		session.log("info", "Send buffer below the limit again, delivering to %s", host);
	end
	stanza.attr.xmlns = nil;
	session.send(stanza, not copy and host or nil);
	return true;
end

local function deliver(session, host, stanza)
	if write_to(session, host, stanza) then return true; end
	return bounce(host, stanza, "wait", "resource-constraint", "Component is not reading its stream", "send_buffer_full");
end

-- Everything addressed to a bound domain (or any JID under it) comes here.
local function dispatch(host, stanza)
	local group = domains[host];
	if not group or #group.list == 0 then
		module:log("debug", "Hostname not bound, bouncing: %s", stanza:top_tag());
		return bounce(host, stanza, "wait", "remote-server-timeout", "Component unavailable", "unbound");
	end
	local name, stanza_type, to = stanza.name, stanza.attr.type, stanza.attr.to;

	-- 1. The answer to a request an instance sent goes back to that instance's stream.
	if name == "iq" and (stanza_type == "result" or stanza_type == "error") and to and stanza.attr.id then
		local key = pending_key(to, stanza.attr.id);
		local entry = pending_iqs[key];
		if entry then
			forget_pending(key, entry);
			local session = entry.session;
			if session.closing or session.destroyed or not session_holds(session, host) then
				m_dropped:with_labels("requester_gone"):add(1);
				module:log("debug", "Dropping the answer to a request whose stream is gone: %s", stanza:top_tag());
				return true;
			end
			if entry.orig_id then stanza.attr.id = entry.orig_id; end
			return deliver(session, host, stanza);
		end
	end

	-- 2. Addressed to one instance (domain/resource).
	local node, _, resource = jid_split(to);
	if not node and resource then
		local inst = group.by_name[host .. "/" .. resource];
		if inst then return deliver(inst.session, host, stanza); end
	end

	-- 3. The domain's algorithm.
	local algorithm = algorithm_of(host);
	if algorithm == "all" and #group.list > 1
		and (name == "presence" or (name == "message" and stanza_type ~= "error")) then
		local done, delivered, skipped = {}, false, 0;
		for _, inst in ipairs(group.list) do
			local session = inst.session;
			if not done[session] then
				done[session] = true;
				if write_to(session, host, stanza, true) then delivered = true; else skipped = skipped + 1; end
			end
		end
		if delivered then
			-- the sender got its stanza delivered; the copies for streams that do not read are counted
			if skipped > 0 then m_dropped:with_labels("send_buffer_full"):add(skipped); end
			return true;
		end
		return bounce(host, stanza, "wait", "resource-constraint", "Component is not reading its stream", "send_buffer_full");
	end
	local inst = pick_instance(group, algorithm, stanza);
	if algorithm == "affinity" and name == "presence" and stanza_type == "unavailable" then
		local from = stanza.attr.from;
		local entry = from and group.affinity[from];
		if entry then
			group.affinity[from] = nil;
			group.n_affinity = group.n_affinity - 1;
		end
	end
	return deliver(inst.session, host, stanza);
end

-- Forgets answers that never came and affinities of JIDs that are gone.
module:add_timer(60, function ()
	local now = time_now();
	for key, entry in pairs(pending_iqs) do
		if now - entry.t > opt_iq_timeout then forget_pending(key, entry); end
	end
	for _, group in pairs(domains) do
		for remote, entry in pairs(group.affinity) do
			local stale;
			if entry.local_session then
				stale = full_sessions[remote] ~= entry.local_session;
			else
				stale = now - entry.seen > opt_affinity_timeout;
			end
			if stale or not entry.inst.bound then
				group.affinity[remote] = nil;
				group.n_affinity = group.n_affinity - 1;
			end
		end
		if group.n_affinity < opt_max_affinity then group.affinity_full_logged = nil; end
	end
	return 60;
end);

-- Per-host part: routing for `Component "H" "component_xep0225"` ---------------------

function module.add_host(module)
	if module:get_host_type() ~= "component" then
		error("mod_component_xep0225 must be loaded as a component: Component \"" .. module.host
			.. "\" \"component_xep0225\"", 0);
	end
	local host = module.host;
	bindable[host] = true;
	host_modules[host] = module;

	local configured = module:get_option_string("component_xep0225_routing", default_algorithm);
	local algorithm = algorithm_name(configured);
	if not algorithm then
		module:log("error", "Unknown component_xep0225_routing %q for %s; using %s (known: %s)", configured, host,
			default_algorithm, table.concat(algorithm_names, ", "));
		algorithm = default_algorithm;
	end
	routing_config[host] = algorithm;
	routing_locked[host] = module:get_option_boolean("component_xep0225_routing_locked", false);
	update_host_status(host);

	local function handle_stanza(event)
		return dispatch(host, event.stanza);
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
		routing_config[host], routing_locked[host], routing_override[host] = nil, nil, nil;
		local group = domains[host];
		local closing = {};
		for _, inst in ipairs(group and group.list or {}) do closing[inst.session] = true; end
		for holder in pairs(closing) do
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
	session.instances = {}; -- hostname -> instance (see add_instance)
	session.domains = {}; -- domain -> { hostname -> instance }
	session.n_pending = 0; -- IQ requests waiting for an answer (see track_request)
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
		features:tag("sm", { xmlns = xmlns_sm }):up();
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

-- Returns the prepped domain and resource (nil for a plain domain), or nil plus
-- (type, condition, text) for the error.
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
	if resource == "" then
		return nil, "modify", "bad-request", "Invalid hostname";
	end
	return host, resource;
end

-- The weight of an instance for 'weighted' routing: the 'weight' attribute of <hostname/>
-- in urn:xmpp:component:balancing:0 (also accepted without a namespace), an integer from
-- 1 to 1000; nil when absent, false when invalid.
local max_weight = 1000;
local function parse_weight(child)
	local hostname = child:get_child("hostname");
	local text = hostname and (hostname.attr[xmlns_balancing .. "\1weight"] or hostname.attr.weight);
	if text == nil then return nil; end
	local weight = tonumber(text);
	if not weight or weight ~= math.floor(weight) or weight < 1 or weight > max_weight
		or not tostring(text):match("^%s*%d+%s*$") then
		return false;
	end
	return math.floor(weight);
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
	local host, resource_or_type, condition, text = parse_hostname(child);
	if not host then
		return iq_error(session, stanza, resource_or_type, condition, text);
	end
	local resource = resource_or_type;
	local weight = parse_weight(child);
	if weight == false then
		return iq_error(session, stanza, "modify", "bad-request",
			"The weight must be an integer from 1 to " .. max_weight);
	end
	if not allowed_hostnames(session.identity)[host] then
		session.log("info", "Refused bind of %s: not in component_xep0225_hostnames of %s", host, session.identity);
		return iq_error(session, stanza, "cancel", "not-allowed", "Hostname not allowed for this identity");
	end
	if not bindable[host] or not hosts[host] then
		session.log("warn", "Refused bind of %s: not declared as Component \"%s\" \"component_xep0225\"", host, host);
		return iq_error(session, stanza, "cancel", "not-allowed", "Hostname is not a component_xep0225 host");
	end
	local hostname = resource and (host .. "/" .. resource) or host;
	local group = domains[host];
	local holder = group and group.by_name[hostname];
	if holder and holder.session ~= session then
		return iq_error(session, stanza, "cancel", "conflict", "Hostname is bound by another stream");
	end
	if holder then
		if weight and holder.weight ~= weight then -- re-binding may change the weight
			holder.weight, holder.current = weight, 0;
			session.log("info", "Weight of %s is now %d", hostname, weight);
		end
	else
		if group and #group.list >= opt_max_instances then
			session.log("warn", "Refused bind of %s: %s already has %d instances (component_xep0225_max_instances)",
				hostname, host, #group.list);
			return iq_error(session, stanza, "wait", "resource-constraint", "Too many instances of this domain");
		end
		add_instance(session, host, resource, weight);
	end
	session.send(st.reply(stanza):tag("bind", { xmlns = xmlns_component }):text_tag("hostname", hostname));
end

local function handle_unbind(session, stanza, child)
	local host, resource_or_type, condition, text = parse_hostname(child);
	if not host then
		return iq_error(session, stanza, resource_or_type, condition, text);
	end
	local resource = resource_or_type;
	local inst = session.instances[resource and (host .. "/" .. resource) or host];
	if not inst then
		return iq_error(session, stanza, "cancel", "item-not-found", "Hostname is not bound on this stream");
	end
	remove_instance(inst, "unbind");
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

-- XEP-0198 acknowledgements (no resumption) -----------------------------------------
-- A component may enable stream management on its stream. The server then keeps every
-- stanza it wrote to the stream until the component acknowledges it; when the stream
-- ends (closed, killed, timed out), the stanzas routed to it that were never acknowledged
-- are routed again: to another instance of their domain, or bounced when none is left.
-- Nothing is lost silently; a stanza the component handled but had not yet acknowledged
-- may arrive twice (at least once).

local sm_request_every = 16; -- unacknowledged stanzas before the server asks for an <a/>

local function sm_request(session)
	local sm = session.sm;
	if not sm or sm.requested or session.closing then return; end
	sm.requested = true;
	session.send(st.stanza("r", { xmlns = xmlns_sm }));
end

-- Called for every stanza written to a stream with stream management enabled.
-- routed_host: the domain whose routing chose this stream (nil for the server's own
-- answers and for copies delivered to every instance under 'all').
local function sm_sent(session, stanza, routed_host)
	local sm = session.sm;
	sm.sent = sm.sent + 1;
	sm.queue[sm.sent] = { stanza = stanza, host = routed_host };
	local unacked = sm.sent - sm.acked;
	-- A component that stopped reading (its write buffer grows: TCP pushes back) cannot
	-- acknowledge what it has not read: backpressure, which the send-buffer cap handles,
	-- not a missing acknowledgement.
	if unacked > opt_max_unacked and queued_bytes(session) < 65536 then
		session.log("warn", "%d stanzas not acknowledged; closing the stream", unacked);
		timer.add_task(0, function ()
			session:close({ condition = "resource-constraint", text = "Too many unacknowledged stanzas" });
		end);
		return;
	end
	if unacked % sm_request_every == 0 then
		sm_request(session);
	elseif not sm.timer then
		sm.timer = timer.add_task(1, function ()
			sm.timer = nil;
			if session.sm == sm and sm.sent > sm.acked then sm_request(session); end
		end);
	end
end

-- The stream is gone: route again what it never acknowledged.
local function sm_reroute(session)
	local sm = session.sm;
	if not sm then return; end
	session.sm = nil;
	local rerouted, dropped = 0, 0;
	for i = sm.acked + 1, sm.sent do
		local item = sm.queue[i];
		if item and item.host then
			local stanza = item.stanza;
			local stanza_type = stanza.attr.type;
			if stanza.name == "iq" and (stanza_type == "result" or stanza_type == "error") then
				dropped = dropped + 1; -- the answer to a request of the stream that is gone
			else
				rerouted = rerouted + 1;
				dispatch(item.host, st.clone(stanza));
			end
		end
	end
	if rerouted > 0 or dropped > 0 then
		session.log("info", "%d unacknowledged stanza(s) routed again, %d answer(s) to its own requests dropped",
			rerouted, dropped);
		m_rerouted:with_labels():add(rerouted);
		m_dropped:with_labels("requester_gone"):add(dropped);
	end
end

local function handle_sm(session, stanza)
	local name, sm = stanza.name, session.sm;
	if name == "enable" then
		if sm then
			session.send(st.stanza("failed", { xmlns = xmlns_sm }):tag("unexpected-request", { xmlns = xmlns_stanzas }));
			return;
		end
		session.sm = { sent = 0, acked = 0, queue = {}, handled = 0 };
		session.log("debug", "Stream management enabled (acknowledgements, no resumption)");
		session.send(st.stanza("enabled", { xmlns = xmlns_sm })); -- no 'resume': not offered
	elseif name == "r" and sm then
		session.send(st.stanza("a", { xmlns = xmlns_sm, h = ("%d"):format(sm.handled) }));
	elseif name == "a" and sm then
		local h = tonumber(stanza.attr.h);
		if not h or h ~= math.floor(h) or h < sm.acked or h > sm.sent then
			session.log("info", "Acknowledgement h=%s out of range (%d..%d)", tostring(stanza.attr.h), sm.acked, sm.sent);
			return session:close({ condition = "undefined-condition",
				text = "Acknowledged more stanzas than were sent",
				extra = st.stanza("handled-count-too-high", { xmlns = xmlns_sm, h = tostring(stanza.attr.h),
					["send-count"] = ("%d"):format(sm.sent) }) });
		end
		for i = sm.acked + 1, h do sm.queue[i] = nil; end
		sm.acked = h;
		sm.requested = false;
		if sm.sent - sm.acked >= sm_request_every then sm_request(session); end
	else
		return session:close({ condition = "unsupported-stanza-type",
			text = "Enable stream management with <enable/> before <r/> or <a/>" });
	end
end

-- XEP-0354: a component asks for, or sets, the routing algorithm of its own domain.
local function handle_cmr(session, stanza, child, domain)
	local reply_from = stanza.attr.to or domain;
	if stanza.attr.type == "get" and child.name == "query" then
		local reply = st.reply(stanza);
		reply.attr.from = reply_from;
		reply:tag("query", { xmlns = xmlns_cmr })
			:tag("active", { algorithm = algorithm_urns[algorithm_of(domain)] }):up();
		for _, name in ipairs(algorithm_names) do
			reply:tag("available", { algorithm = algorithm_urns[name] }):up();
		end
		session.send(reply);
		return;
	elseif stanza.attr.type == "set" and child.name == "cmr" then
		local name = algorithm_name(child.attr.algorithm);
		local err;
		if not name then
			err = error_reply(stanza, "modify", "bad-request", "Unknown routing algorithm");
		elseif routing_locked[domain] then
			err = error_reply(stanza, "cancel", "not-allowed", "The routing algorithm of " .. domain .. " is fixed by the server's configuration");
		end
		if err then
			err.attr.from = reply_from;
			session.send(err);
			return;
		end
		if algorithm_of(domain) ~= name then
			domains[domain].override = name; -- the domain is held by this stream, so its group exists
			m_cmr_changes:with_labels():add(1);
			session.log("info", "Routing algorithm of %s set to %s (XEP-0354, from %s)", domain, name, stanza.attr.from);
			update_host_status(domain);
		end
		local reply = st.reply(stanza);
		reply.attr.from = reply_from;
		session.send(reply);
		return;
	end
	local err = error_reply(stanza, "modify", "bad-request", "Use <query/> with type='get' or <cmr/> with type='set'");
	if err then err.attr.from = reply_from; session.send(err); end
end

-- The server's disco#info as mod_disco builds it for that host, plus urn:xmpp:cmr:0,
-- which only component streams of this module can use (a global module cannot add a
-- feature to a VirtualHost's mod_disco).
local function handle_server_disco_info(session, stanza)
	local vhost = stanza.attr.to;
	local query = st.stanza("query", { xmlns = xmlns_disco_info });
	local done = {};
	for _, identity in ipairs(modulemanager.get_items("identity", vhost) or {}) do
		local key = identity.category .. "\0" .. identity.type;
		if not done[key] then query:tag("identity", identity):up(); done[key] = true; end
	end
	for _, feature in ipairs(modulemanager.get_items("feature", vhost) or {}) do
		if not done[feature] then query:tag("feature", { var = feature }):up(); done[feature] = true; end
	end
	if not done[xmlns_cmr] then query:tag("feature", { var = xmlns_cmr }):up(); end
	for _, extension in ipairs(modulemanager.get_items("extension", vhost) or {}) do
		if not done[extension] then query:add_child(extension); done[extension] = true; end
	end
	session.send(st.reply(stanza):add_child(query));
end

-- Remembers which stream sent an IQ request, so that its answer comes back to it even
-- when another instance of the domain would be chosen. Requests to the server itself
-- (a host or a local account's bare JID) are answered straight to this stream and need
-- no entry. A request id another live stream is waiting on for the same address is
-- replaced by a unique one, restored in the answer.
local function track_request(session, stanza, from_host)
	local id = stanza.attr.id;
	if not id then return true; end
	local _, to_host, to_resource = jid_split(stanza.attr.to);
	local to_host_session = to_host and hosts[to_host];
	if to_host_session and to_host_session.type == "local" and not to_resource then return true; end
	local from = jid_prep(stanza.attr.from);
	if not from then return true; end
	if session.n_pending >= opt_max_pending_iqs then
		iq_error(session, stanza, "wait", "resource-constraint", "Too many requests waiting for an answer on this stream");
		return false;
	end
	local key = pending_key(from, id);
	local existing = pending_iqs[key];
	local orig_id;
	if existing then
		if existing.session == session then
			forget_pending(key, existing); -- the same stream reusing an id: the newer request wins
		else
			counters.stamp = counters.stamp + 1;
			orig_id = id;
			id = "x225-" .. counters.stamp .. "-" .. id;
			stanza.attr.id = id;
			key = pending_key(from, id);
		end
	end
	pending_iqs[key] = { session = session, domain = from_host, orig_id = orig_id, t = time_now() };
	session.n_pending = session.n_pending + 1;
	return true;
end

-- The component's answer to a transfer order sent by the admin shell (see shell.transfer).
local function transfer_answered(session, stanza)
	local transfer = session.transfer;
	if not transfer or stanza.name ~= "iq" or stanza.attr.id ~= transfer.id then return false; end
	local stanza_type = stanza.attr.type;
	if stanza_type ~= "result" and stanza_type ~= "error" then return false; end
	session.transfer = nil;
	if stanza_type == "result" then
		session.log("info", "Transfer to %s accepted by the component", transfer.server);
		transfer.done("accepted");
	else
		local _, condition = stanza:get_error();
		session.log("info", "Transfer to %s refused by the component: %s", transfer.server, tostring(condition));
		transfer.done("refused", condition);
	end
	return true;
end

local function handle_authed(session, stanza)
	if stanza.attr.xmlns == xmlns_sm then return handle_sm(session, stanza); end
	if session.sm then session.sm.handled = session.sm.handled + 1; end
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
	if transfer_answered(session, stanza) then return; end

	local from = stanza.attr.from;
	if not from then
		return session:close({ condition = "improper-addressing", text = "Stanzas from a component need a 'from' address" });
	end
	local from_node, from_host, from_resource = jid_prepped_split(from);
	local held = from_host and session.domains[from_host];
	if not held or next(held) == nil then
		return session:close({ condition = "invalid-from",
			text = "'from' <" .. tostring(from) .. "> is not under a hostname bound on this stream" });
	end
	-- 'domain/resource' names an instance: only its own stream may use it.
	local own_instance;
	if not from_node and from_resource then
		local group = domains[from_host];
		local inst = group and group.by_name[from_host .. "/" .. from_resource];
		if inst and inst.session ~= session then
			return session:close({ condition = "invalid-from",
				text = "'from' <" .. tostring(from) .. "> is an instance bound by another stream" });
		end
		own_instance = inst;
	end
	-- Activity, for 'mostactive': the instance named in 'from', else every instance of
	-- the domain on this stream.
	counters.activity = counters.activity + 1;
	if own_instance then
		own_instance.activity = counters.activity;
	else
		for _, inst in pairs(held) do inst.activity = counters.activity; end
	end

	local to = stanza.attr.to;
	if stanza.name == "iq" then
		local payload = stanza.tags[1];
		local stanza_type = stanza.attr.type;
		if payload and payload.attr.xmlns == xmlns_cmr
			and (to == nil or to == session.server_host or jid_prep(to) == from_host) then
			return handle_cmr(session, stanza, payload, from_host);
		end
		if stanza_type == "get" and to == session.server_host and payload
			and payload.attr.xmlns == xmlns_disco_info and payload.name == "query"
			and (payload.attr.node == nil or payload.attr.node == "") then
			return handle_server_disco_info(session, stanza);
		end
		if to and (stanza_type == "get" or stanza_type == "set") then
			if not track_request(session, stanza, from_host) then return; end
		end
	end
	if not to then
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
	-- routed_host: see sm_sent
	function session.send(data, routed_host)
		local stanza = session.sm and st.is_stanza(data)
			and (data.name == "message" or data.name == "presence" or data.name == "iq") and data or nil;
		data = tostring(data);
		session.queued = session.queued + #data;
		local ok, err = conn:write(data);
		if stanza then sm_sent(session, stanza, routed_host); end
		return ok, err;
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
	unbind_all(session, "stream closed");
	sm_reroute(session);
	if session.transfer then
		local transfer = session.transfer;
		session.transfer = nil;
		transfer.done("unanswered");
	end
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

-- Admin shell: list instances, change a domain's routing, move components elsewhere ----
-- (prosodyctl shell "component_xep0225:list()", see README.md)

-- The authenticated streams a shell argument names: a stream id, an identity, a domain
-- (every stream holding an instance of it) or one instance (domain/resource).
local function streams_named(who)
	local found, n = {}, 0;
	if type(who) ~= "string" or who == "" then return found, 0; end
	local prepped = jid_prep(who) or who;
	local node, host, resource = jid_split(prepped);
	for _, session in pairs(sessions) do
		if session.type == "component" and not session.closing then
			local match = session.id == who or session.identity == prepped
				or (session.instances and session.instances[prepped] ~= nil)
				or (host ~= nil and not node and not resource and session_holds(session, host));
			if match and not found[session] then found[session] = true; n = n + 1; end
		end
	end
	return found, n;
end

-- host, host:port, [v6] or [v6]:port; nothing that could break out of the element.
local function valid_server(server)
	return type(server) == "string" and #server > 0 and #server <= 1024
		and not server:find("[%s<>&'\"]") and server:match("^[%w%.%-%[%]:]+$") ~= nil;
end

local shell_env = module:shared("/*/admin_shell/env");
local shell = {};
shell_env.component_xep0225 = shell;

-- luacheck: ignore 212/self
function shell:list()
	local print = self.session and self.session.print or print;
	local n = 0;
	for _, session in pairs(sessions) do
		if session.type == "component" then
			n = n + 1;
			local names = {};
			for hostname, inst in pairs(session.instances or {}) do
				names[#names + 1] = hostname .. (inst.weight ~= 1 and (" (weight " .. inst.weight .. ")") or "");
			end
			table.sort(names);
			print(("%s  %s from %s  %s%s"):format(session.id, tostring(session.identity), tostring(session.ip),
				#names > 0 and table.concat(names, ", ") or "(nothing bound)", session.closing and "  [closing]" or ""));
		end
	end
	local hosts_list = {};
	for host in pairs(bindable) do hosts_list[#hosts_list + 1] = host; end
	table.sort(hosts_list);
	for _, host in ipairs(hosts_list) do
		local group = domains[host];
		print(("%s: %s, %d instance(s)%s"):format(host, algorithm_of(host), group and #group.list or 0,
			(group and group.override) and " (set by a component)"
				or routing_override[host] and " (set in the shell)" or ""));
	end
	return true, ("%d component stream(s)"):format(n);
end

-- Shows or sets (as an admin, even where component_xep0225_routing_locked) a domain's
-- algorithm until the next restart.
function shell:routing(host, algorithm)
	host = type(host) == "string" and nameprep(host) or nil;
	if not host or not bindable[host] then return false, "Not a component_xep0225 host: " .. tostring(host); end
	if algorithm == nil then return true, host .. ": " .. algorithm_of(host); end
	local name = algorithm_name(algorithm);
	if not name then return false, "Unknown algorithm; known: " .. table.concat(algorithm_names, ", "); end
	routing_override[host] = name;
	if domains[host] then domains[host].override = nil; end -- the admin's choice wins over a component's
	m_cmr_changes:with_labels():add(1);
	module:log("info", "Routing algorithm of %s set to %s (admin shell)", host, name);
	update_host_status(host);
	return true, host .. ": " .. name;
end

-- XEP-0051: orders the streams named by `who` to reconnect to `server` (host[:port]).
-- Returns a promise that the shell waits on: resolved once every stream answered or
-- component_xep0225_transfer_timeout passed. A stream that accepts reconnects elsewhere,
-- binds there and then closes this stream; one that refuses or does not answer stays.
function shell:transfer(who, server, domain)
	if not valid_server(server) then return false, "Give the new server as host or host:port"; end
	local targets, n = streams_named(who);
	if n == 0 then return false, "No component stream matches " .. tostring(who); end
	return promise.new(function (resolve)
		local outcome = { accepted = 0, refused = 0, unanswered = 0 };
		local refusals = {};
		local waiting = n;
		local finished = false;
		local function finish()
			if finished then return; end
			finished = true;
			local text = ("%d stream(s) ordered to %s: %d accepted, %d refused, %d did not answer"):format(
				n, server, outcome.accepted, outcome.refused, outcome.unanswered);
			if #refusals > 0 then text = text .. " (" .. table.concat(refusals, ", ") .. ")"; end
			resolve(text);
		end
		for session in pairs(targets) do
			counters.stamp = counters.stamp + 1;
			local id = "cxf-" .. counters.stamp;
			local transfer = { id = id, server = server };
			function transfer.done(result, condition)
				if transfer.finished then return; end
				transfer.finished = true;
				outcome[result] = outcome[result] + 1;
				if condition then refusals[#refusals + 1] = session.id .. ": " .. tostring(condition); end
				waiting = waiting - 1;
				if waiting == 0 then finish(); end
			end
			session.transfer = transfer;
			session.log("info", "Ordering the component to %s (XEP-0051)", server);
			session.send(st.iq({ type = "set", id = id, from = session.server_host, to = session.identity })
				:tag("query", { xmlns = xmlns_cxf })
					:text_tag("domain", domain or session.server_host)
					:text_tag("server", server));
		end
		timer.add_task(opt_transfer_timeout, function ()
			for session in pairs(targets) do
				local transfer = session.transfer;
				if transfer and not transfer.finished then
					session.transfer = nil;
					transfer.done("unanswered");
				end
			end
			finish();
		end);
	end);
end

-- RFC 6120 see-other-host: closes the streams named by `who` at once, telling the
-- component where to connect instead. Their instances leave the domain immediately.
function shell:redirect(who, server)
	if not valid_server(server) then return false, "Give the new server as host or host:port"; end
	local targets, n = streams_named(who);
	if n == 0 then return false, "No component stream matches " .. tostring(who); end
	for session in pairs(targets) do
		session.log("info", "Redirecting the component to %s (see-other-host)", server);
		session:close(st.stanza("stream:error")
			:tag("see-other-host", { xmlns = xmlns_xmpp_streams }):text(server):up());
	end
	return true, ("%d stream(s) sent to %s"):format(n, server);
end

-- Ad-hoc command for admins (XEP-0050) --------------------------------------------------
-- On every VirtualHost where mod_adhoc is loaded: "Move component streams" (XEP-0051
-- transfer, or see-other-host), the same as the shell's transfer/redirect.

local adhoc_node = "xmpp:prosody.im/mod_component_xep0225#move";
local adhoc_ok, adhoc_lib = pcall(module.require, module, "adhoc");
local dataforms_new = require "util.dataforms".new;
local adhoc_simple = require "util.adhoc".new_simple_form;

local move_form = dataforms_new {
	title = "Move component streams";
	instructions = "Order XEP-0225 component streams to another server.";
	{ name = "who", type = "text-single", required = true,
		label = "Stream id, identity, domain or domain/resource" };
	{ name = "server", type = "text-single", required = true, label = "New server (host or host:port)" };
	{ name = "how", type = "list-single", label = "How", value = "transfer",
		options = {
			{ label = "XEP-0051 transfer (the component reconnects, then leaves)", value = "transfer" };
			{ label = "see-other-host (the stream ends now)", value = "redirect" };
		} };
};

local move_handler = adhoc_simple(move_form, function (fields, form_err, data)
	if form_err then
		return { status = "completed", error = { message = "Missing or invalid field(s): "
			.. table.concat((function () local t = {}; for k in pairs(form_err) do t[#t + 1] = k; end; return t; end)(), ", ") } };
	end
	module:log("info", "%s moves component streams %q to %s (%s, ad-hoc command)", tostring(data.from), tostring(fields.who),
		tostring(fields.server), tostring(fields.how));
	local ok, result = true, nil;
	if fields.how == "redirect" then
		ok, result = shell.redirect(nil, fields.who, fields.server);
	else
		local p, err = shell.transfer(nil, fields.who, fields.server);
		if p == false or p == nil then
			ok, result = false, err;
		elseif async.ready() then
			-- stanzas from c2s are handled in the session's async runner: wait for the answers
			result = async.wait_for(p);
		else
			result = "Transfer ordered; the answers are in the log";
		end
	end
	if not ok then return { status = "completed", error = { message = tostring(result) } }; end
	return { status = "completed", info = tostring(result) };
end);

local adhoc_descriptor = adhoc_ok and adhoc_lib.new("Move component streams", adhoc_node, move_handler, "admin");
local adhoc_hosts = {}; -- VirtualHost -> module context holding the command there

-- mod_adhoc collects commands from modules loaded on its own host; this global module
-- adds its item through a per-host context, which fires item-added on that host.
local function add_adhoc(host)
	if not adhoc_descriptor or adhoc_hosts[host] then return; end
	if not (hosts[host] and hosts[host].type == "local" and modulemanager.is_loaded(host, "adhoc")) then return; end
	local context = module:context(host);
	if context.default_permission and hosts[host].authz then
		-- 13: the permission the descriptor's "admin" stands for, on this host (adhoc.lib
		-- declared it for the hosts active when this module loaded only)
		context:default_permission("prosody:admin", "adhoc:" .. adhoc_node);
	end
	context:add_item("adhoc-provider", adhoc_descriptor);
	adhoc_hosts[host] = context;
end

-- VirtualHosts active now, activated later (after their modules are loaded: priority
-- below modulemanager's), and mod_adhoc loaded or unloaded on one of them later.
local watched_hosts = {};
local function watch_host(host)
	if not (hosts[host] and hosts[host].type == "local") then return; end
	add_adhoc(host);
	if watched_hosts[host] then return; end
	watched_hosts[host] = true;
	local context = module:context(host);
	context:hook("module-loaded", function (event)
		if event.module == "adhoc" then add_adhoc(host); end
	end);
	context:hook("module-unloaded", function (event)
		if event.module == "adhoc" and adhoc_hosts[host] then
			adhoc_hosts[host]:remove_item("adhoc-provider", adhoc_descriptor);
			adhoc_hosts[host] = nil;
		end
	end);
end
for host in pairs(hosts) do watch_host(host); end
module:hook_global("host-activated", watch_host, -10);


-- A real unload (not a reload) ends every component stream.
function module.unload()
	-- the ad-hoc command goes on reload too (the reloaded code adds its own)
	for host, context in pairs(adhoc_hosts) do
		context:remove_item("adhoc-provider", adhoc_descriptor);
		adhoc_hosts[host] = nil;
	end
	if module.reloading then return; end
	if shell_env.component_xep0225 == shell then shell_env.component_xep0225 = nil; end
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
