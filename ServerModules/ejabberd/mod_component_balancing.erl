%%%----------------------------------------------------------------------
%%% mod_component_balancing: several XEP-0114 connections of one component
%%% domain, balanced over the LIVE ones only, with nothing dropped silently
%%% by the router.  For ejabberd 23.01 (Debian 12), single node or cluster.
%%%
%%% What it fixes (read in ejabberd 23.01's ejabberd_router.erl,
%%% ejabberd_router_mnesia.erl and ejabberd_service.erl):
%%%
%%%  1. With `domain_balancing' (type + component_number N) a domain has N
%%%     route slots; a slot whose connection died keeps pid=undefined, and
%%%     the router still hashes stanzas onto it, then drops them without an
%%%     error (ejabberd_router:do_route/2, `do_route(_Pkt, _Route) -> ok').
%%%     This module replaces that choice for the domains it is given: a
%%%     `filter_packet' hook (global, before ejabberd's own route lookup)
%%%     keeps only routes whose process is alive (local: is_process_alive;
%%%     remote: its node is connected), picks one by the configured type
%%%     (random, source, bare_source, destination, bare_destination) among
%%%     THOSE, and sends it there.  When none is left, or the send fails,
%%%     the stanza is bounced with `service-unavailable' (results and errors
%%%     are never bounced, as RFC 6120 says; they are logged and dropped).
%%%     Do NOT set `domain_balancing' for these domains: every connection
%%%     then registers a plain route (a second connection of a domain
%%%     registers fine without it) and the module balances over all of them.
%%%     (With `domain_balancing' set the module still works: empty slots are
%%%     skipped.)
%%%
%%%  2. A service process that ends (connection closed or killed) still has
%%%     `{route, Packet}' messages in its mailbox; ejabberd_service has no
%%%     handler for them at that point and nothing bounces them.  The
%%%     `component_disconnected' hook runs in that process right after its
%%%     route was removed: the module takes every queued stanza out of the
%%%     mailbox and routes it again (to a surviving connection, or bounced).
%%%
%%%  3. A planned shutdown (rolling restart): the component sends, on its
%%%     XEP-0114 stream, before closing it,
%%%       <iq type='set' from='H' to='SERVERDOMAIN' id='…'>
%%%         <unbind xmlns='urn:xmpp:component:0'><hostname>H</hostname></unbind>
%%%       </iq>
%%%     (XEP-0225's unbind element).  The `component_send_packet' hook
%%%     removes this connection's route for H (only a hostname the connection
%%%     authenticated for, and only one of the module's `domains': any other
%%%     gets `item-not-found' or `feature-not-implemented'; with
%%%     `domain_balancing' an early unregister would empty a slot that keeps its
%%%     share), and answers with an empty result; the stream stays
%%%     up, so whatever was already routed to it still arrives, and new
%%%     stanzas go to the other connections.  The component then closes its
%%%     stream when its queue is empty.  A server without this module answers
%%%     the IQ with an error, which a component treats as "unbind not
%%%     supported" (ComponentKit, component-host: they close as before).
%%%
%%%  4. Acknowledgements (with the listener ejabberd_service_acks, same
%%%     directory, and components that opt in with <enable xmlns='urn:xmpp:sm:3'/>
%%%     after the handshake; the protocol is described in that file).  A
%%%     stanza this module routes to a connection that acknowledges (a member
%%%     of the pg group `acked' of scope `mod_component_balancing', which the
%%%     listener joins at <enable/>) is kept in this node's ledger (the
%%%     process mod_component_balancing_ledger, its ETS table of the same
%%%     name) and carries a tag {node(), Ref} in its meta, until the
%%%     connection's <a h/> covers it.  When that connection's process dies,
%%%     or its node goes away, the ledger routes again everything it was sent
%%%     and did not acknowledge.  So no stanza sent by a user who is still
%%%     alive is lost when a component instance is killed (its socket
%%%     closes), nor when a whole node is killed (its VM dies and its sockets
%%%     close): what this node routed to the dead node's connections is
%%%     routed again here.  (What the dead node itself routed, for its own
%%%     users, dies with it.)  Delivery is at least once: a stanza handled by
%%%     the component but not yet acknowledged when it dies is delivered
%%%     again (a component acknowledges every 16 stanzas and before a
%%%     graceful close).  A connection that does not enable is tracked by
%%%     nothing and behaves as below.
%%%
%%% What it cannot fix:
%%%
%%%  - without acknowledgements (ejabberd_service, or a component that does
%%%    not enable them), stanzas already written to the socket of a
%%%    connection whose peer was killed (the kernel buffers, and what the
%%%    service process writes between the peer's death and its noticing the
%%%    close) are lost without an error: only what was in flight to the
%%%    killed process;
%%%  - a node that dies while its TCP connections stay open (a frozen machine,
%%%    a network partition) is seen as dead only after `net_ticktime'
%%%    (ejabberd's default: 60 s); until then its connections count as live
%%%    and what is sent to them waits in the ledger (with acknowledgements:
%%%    routed again when the node is declared down) or is lost (without).
%%%    When the node's VM dies and its sockets close (a crash, SIGKILL), the
%%%    other nodes know at once;
%%%  - right after <enable/>, another node may not yet see the connection in
%%%    the pg group (pg propagates asynchronously): what it routes there in
%%%    that moment is not kept;
%%%  - a ledger that crashes (or the module stopped) forgets what it kept.
%%%
%%% Install (ejabberd 23.01 on Debian; erlc comes with erlang-base):
%%%
%%%   erlc -o /opt/ejabberd-modules \
%%%     -I /usr/lib/x86_64-linux-gnu/ejabberd-23.01-1/include \
%%%     -I /usr/lib/erlang/lib/p1_xmpp-1.6.1/include \
%%%     -pa /usr/lib/x86_64-linux-gnu/ejabberd-23.01-1/ebin \
%%%     mod_component_balancing.erl ejabberd_service_acks.erl
%%%
%%%   ejabberdctl.cfg (every node; ejabberdctl passes ERL_OPTIONS to erl):
%%%     ERL_OPTIONS="-pa /opt/ejabberd-modules"
%%%
%%%   ejabberd.yml (every node, the same):
%%%     modules:
%%%       mod_component_balancing:
%%%         type: random                  # default for a domain given in a list
%%%         domains:
%%%           "search.example.com": random
%%%           "muc-bridge.example.com": source
%%%     # (or `domains: ["search.example.com"]' with the one `type')
%%%     listen:                           # acknowledgements: the component port
%%%       -                               # with ejabberd_service_acks in place
%%%         port: 5275                    # of ejabberd_service, same options
%%%         module: ejabberd_service_acks
%%%         tls: true
%%%         hosts: {"search.example.com": {password: "…"}}
%%%
%%% The hooks are global (they see every stanza of the node): enable the
%%% module under one virtual host's configuration only (the top-level
%%% `modules:' with a single host, or `host_config:' of one host).
%%%----------------------------------------------------------------------
-module(mod_component_balancing).
-behaviour(gen_mod).

-export([start/2, stop/1, reload/3, depends/2, mod_options/1, mod_opt_type/1,
         mod_doc/0]).
-export([filter_packet/1, component_disconnected/2, component_send_packet/1]).
%% The ledger (a gen_server registered as mod_component_balancing_ledger)
-behaviour(gen_server).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2, terminate/2,
         code_change/3]).
%% For ejabberd_service_acks
-export([acknowledged/1]).

-include("xmpp.hrl").
-include("logger.hrl").
-include("ejabberd_router.hrl").

-define(NS_COMPONENT_UNBIND, <<"urn:xmpp:component:0">>).
-define(KEY, {?MODULE, domains}).
-define(TYPES, [random, source, bare_source, destination, bare_destination]).
%% The pg scope (and its process) whose group `acked' holds the connections
%% that acknowledge (ejabberd_service_acks after <enable/>).
-define(SCOPE, mod_component_balancing).
-define(GROUP, acked).
-define(SCOPE_CHILD, mod_component_balancing_pg).
%% The ledger process, and its tables: {Ref, Pid, Seq, Pkt} (the stanza as it
%% was routed, without the tag) and {Pid} (the connections it monitors).
-define(LEDGER, mod_component_balancing_ledger).
-define(WATCHED, mod_component_balancing_watched).
%% The meta key of a stanza's ledger tag, {node(), Ref}.
-define(TAG, mod_component_balancing_tag).
%% The process dictionary key of the ledger's sweep: the dead connection.
-define(DEAD, mod_component_balancing_dead).

%%%===================================================================
%%% gen_mod
%%%===================================================================
start(Host, Opts) ->
    persistent_term:put(?KEY, domains(Opts)),
    ok = start_child({?SCOPE_CHILD, {pg, start_link, [?SCOPE]},
                      transient, 5000, worker, [pg]}),
    ok = start_child({?LEDGER, {gen_server, start_link, [{local, ?LEDGER}, ?MODULE, [], []]},
                      transient, 5000, worker, [?MODULE]}),
    ejabberd_hooks:add(filter_packet, ?MODULE, filter_packet, 10),
    ejabberd_hooks:add(component_disconnected, ?MODULE, component_disconnected, 10),
    ejabberd_hooks:add(component_send_packet, ?MODULE, component_send_packet, 10),
    ?INFO_MSG("~ts on ~ts balances ~p", [?MODULE, Host, persistent_term:get(?KEY)]),
    ok.

stop(_Host) ->
    ejabberd_hooks:delete(filter_packet, ?MODULE, filter_packet, 10),
    ejabberd_hooks:delete(component_disconnected, ?MODULE, component_disconnected, 10),
    ejabberd_hooks:delete(component_send_packet, ?MODULE, component_send_packet, 10),
    persistent_term:erase(?KEY),
    stop_child(?LEDGER),
    stop_child(?SCOPE_CHILD),
    ok.

%% Under ejabberd's supervisor of module processes (gen_mod's), not linked to
%% the caller; already running (a second host): fine.
start_child(Spec) ->
    case supervisor:start_child(ejabberd_gen_mod_sup, Spec) of
        {ok, _} -> ok;
        {error, {already_started, _}} -> ok;
        {error, already_present} ->
            case supervisor:restart_child(ejabberd_gen_mod_sup, element(1, Spec)) of
                {ok, _} -> ok;
                {error, running} -> ok;
                Err -> Err
            end;
        Err -> Err
    end.

stop_child(Id) ->
    _ = supervisor:terminate_child(ejabberd_gen_mod_sup, Id),
    _ = supervisor:delete_child(ejabberd_gen_mod_sup, Id),
    ok.

reload(_Host, NewOpts, _OldOpts) ->
    persistent_term:put(?KEY, domains(NewOpts)),
    ok.

depends(_Host, _Opts) ->
    [].

mod_opt_type(type) ->
    econf:enum(?TYPES);
mod_opt_type(domains) ->
    econf:either(
      econf:map(econf:domain(), econf:enum(?TYPES)),
      econf:list(econf:domain())).

mod_options(_Host) ->
    [{type, random}, {domains, []}].

mod_doc() ->
    #{desc => ["Balances several XEP-0114 connections of one component "
               "domain over the live ones only; bounces instead of dropping; "
               "re-routes a closing connection's queue; handles "
               "<unbind xmlns='urn:xmpp:component:0'/> for planned shutdowns; "
               "keeps what it routes to connections that acknowledge "
               "(ejabberd_service_acks) and routes it again when they die."]}.

%% #{LDomain => Type} (Opts: the validated options, a map in 23.01)
domains(Opts) ->
    Type = gen_mod:get_opt(type, Opts),
    lists:foldl(
      fun({Domain, T}, Acc) when is_atom(T) -> Acc#{jid:nameprep(Domain) => T};
         (Domain, Acc) -> Acc#{jid:nameprep(Domain) => Type}
      end, #{}, gen_mod:get_opt(domains, Opts)).

%%%===================================================================
%%% 1. Routing to a live connection (filter_packet, every node, every stanza)
%%%===================================================================
filter_packet(drop) ->
    drop;
filter_packet(Pkt) ->
    To = xmpp:get_to(Pkt),
    case persistent_term:get(?KEY, #{}) of
        Domains when is_map_key(To#jid.lserver, Domains) ->
            route(Pkt, To, maps:get(To#jid.lserver, Domains));
        _ ->
            Pkt
    end.

route(Pkt, To, Type) ->
    %% In the ledger, routing again what a dead connection did not
    %% acknowledge: not to that one (a remote connection's route may still be
    %% listed here for a moment, and its node is alive).
    Dead = get(?DEAD),
    Live = lists:sort([Pid || #route{pid = Pid} <- routes(To#jid.lserver), is_pid(Pid),
                              Pid /= Dead, alive(Pid)]),
    try_send(Pkt, Live, key(Type, xmpp:get_from(Pkt), To), acking()),
    {stop, drop}.

%% The domain's routes as the router's backend holds them (ejabberd_router
%% does not export find_routes/1; the Mnesia backend has no cache).
routes(LDomain) ->
    Backend = ejabberd_router:get_backend(),
    case Backend:find_routes(LDomain) of
        {ok, Routes} -> Routes;
        _ -> []
    end.

%% Picks a connection by the hash of Key over the live ones; a send that
%% fails (the process died meanwhile, the node went away) tries the rest.
try_send(Pkt, [], _Key, _Acking) ->
    bounce(Pkt);
try_send(Pkt, Pids, Key, Acking) ->
    Pid = lists:nth(erlang:phash2(Key, length(Pids)) + 1, Pids),
    case deliver(Pid, Pkt, lists:member(Pid, Acking)) of
        true -> ok;
        false -> try_send(Pkt, lists:delete(Pid, Pids), Key, Acking)
    end.

%% A connection that acknowledges gets the stanza with a tag, kept in the
%% ledger until acknowledged.  Order: the entry, then the watch, then the
%% send (see the ledger's 'DOWN').
deliver(Pid, Pkt, false) ->
    send(Pid, {route, Pkt});
deliver(Pid, Pkt, true) ->
    Ref = make_ref(),
    try
        ets:insert(?LEDGER, {Ref, Pid, erlang:unique_integer([monotonic]), Pkt}),
        ets:insert_new(?WATCHED, {Pid}) andalso gen_server:cast(?LEDGER, {watch, Pid})
    of
        _ ->
            case send(Pid, {route, xmpp:put_meta(Pkt, ?TAG, {node(), Ref})}) of
                true ->
                    true;
                false ->
                    %% Not sent: take the entry back and try another
                    %% connection, unless the ledger took it first (it saw
                    %% the process DOWN and routes it again itself).
                    ets:take(?LEDGER, Ref) == []
            end
    catch error:badarg ->
            %% No ledger (the module is stopping): as without acknowledgements.
            send(Pid, {route, Pkt})
    end.

%% The connections that acknowledge, anywhere in the cluster (a read of pg's
%% local table).
acking() ->
    try pg:get_members(?SCOPE, ?GROUP)
    catch error:badarg -> []
    end.

key(random, _From, _To) -> erlang:unique_integer();
key(source, From, _To) -> jid:tolower(From);
key(bare_source, From, _To) -> jid:remove_resource(jid:tolower(From));
key(destination, _From, To) -> jid:tolower(To);
key(bare_destination, _From, To) -> jid:remove_resource(jid:tolower(To)).

alive(Pid) when node(Pid) == node() -> is_process_alive(Pid);
alive(Pid) -> lists:member(node(Pid), nodes()).

send(Pid, Msg) when node(Pid) == node() ->
    case is_process_alive(Pid) of
        true -> Pid ! Msg, true;
        false -> false
    end;
send(Pid, Msg) ->
    %% No `nosuspend' (ejabberd_cluster:send drops on a busy link): wait for
    %% the link rather than lose the stanza; `noconnect': a node that is gone
    %% is not dialled again, the next connection is tried.
    erlang:send(Pid, Msg, [noconnect]) == ok.

bounce(Pkt) ->
    case xmpp:get_type(Pkt) of
        T when T == error; T == result ->
            ?WARNING_MSG("~ts: no live connection for ~ts; dropped a ~ts stanza "
                         "(errors and results are never bounced)",
                         [?MODULE, jid:encode(xmpp:get_to(Pkt)), T]);
        _ ->
            ejabberd_router:route_error(
              Pkt, xmpp:err_service_unavailable(
                     <<"No live connection of this component">>, xmpp:get_lang(Pkt)))
    end.

%%%===================================================================
%%% 2. A closing connection's queue (runs in the dying ejabberd_service
%%%    process, right after it unregistered the route)
%%%===================================================================
component_disconnected(Host, _Reason) ->
    N = drain(0),
    N > 0 andalso ?INFO_MSG("~ts: routed again ~B stanza(s) queued for the closed "
                            "connection of ~ts", [?MODULE, N, Host]),
    ok.

%% A tagged stanza is released from its ledger and routed again untagged
%% (it gets a new tag if it goes to another connection that acknowledges).
drain(N) ->
    receive
        {route, Pkt} ->
            Pkt1 = case xmpp:get_meta(Pkt, ?TAG, undefined) of
                       {Node, _} = Tag when is_atom(Node) ->
                           acknowledged([Tag]),
                           xmpp:del_meta(Pkt, ?TAG);
                       _ ->
                           Pkt
                   end,
            ejabberd_router:route(Pkt1),
            drain(N + 1)
    after 0 ->
            N
    end.

%%%===================================================================
%%% 3. <unbind xmlns='urn:xmpp:component:0'/> (runs in the ejabberd_service
%%%    process of the connection that sent it)
%%%===================================================================
component_send_packet({#iq{type = set, to = #jid{luser = <<>>, lresource = <<>>,
                                                 lserver = Server},
                           sub_els = [SubEl]} = IQ, State} = Acc) ->
    El = case SubEl of
             #xmlel{} -> SubEl;
             _ -> xmpp:encode(SubEl)
         end,
    case {El, ejabberd_router:is_my_host(Server)} of
        {#xmlel{name = <<"unbind">>}, true} ->
            case fxml:get_tag_attr_s(<<"xmlns">>, El) of
                ?NS_COMPONENT_UNBIND -> {stop, unbind(IQ, El, State)};
                _ -> Acc
            end;
        _ ->
            Acc
    end;
component_send_packet(Acc) ->
    Acc.

unbind(IQ, El, State) ->
    Hostname = jid:nameprep(string:trim(fxml:get_subtag_cdata(El, <<"hostname">>))),
    Routes = [jid:nameprep(R) || R <- maps:get(routes, State, [])],
    Balanced = persistent_term:get(?KEY, #{}),
    Lang = xmpp:get_lang(IQ),
    Reply = case Hostname /= error andalso lists:member(Hostname, Routes) of
                false ->
                    xmpp:make_error(IQ, xmpp:err_item_not_found(
                                          <<"Not a hostname of this connection">>, Lang));
                true when not is_map_key(Hostname, Balanced) ->
                    %% Not balanced by this module: with `domain_balancing' an
                    %% early unregister would empty a slot that keeps its share,
                    %% a loss, not a gain.  The component closes as before.
                    xmpp:make_error(IQ, xmpp:err_feature_not_implemented(
                                          <<"This hostname is not balanced by "
                                            "mod_component_balancing">>, Lang));
                true ->
                    ejabberd_router:unregister_route(Hostname),
                    %% What was routed here while the request waited in this
                    %% process's queue would otherwise be written after the
                    %% result, when the component is about to close: route it
                    %% again (to the other connections) before answering, so
                    %% that the result is the last thing routed here.
                    N = drain(0),
                    ?INFO_MSG("~ts: unbound ~ts from ~p (planned shutdown); "
                              "~B queued stanza(s) routed again",
                              [?MODULE, Hostname, self(), N]),
                    xmpp:make_iq_result(IQ)
            end,
    {drop, xmpp_stream_in:send(State, Reply)}.

%%%===================================================================
%%% 4. The ledger: what was routed to connections that acknowledge, until
%%%    they do; routed again when such a connection's process dies (or its
%%%    node goes away).  One per node, for what this node routed.
%%%===================================================================
%% Tags acknowledged (or released) by a connection: one {acked, Refs} to the
%% ledger of each origin node (`noconnect': a node that is gone took its
%% ledger with it).  Runs in the connection's process: its messages reach a
%% ledger before that ledger sees the process DOWN.
-spec acknowledged([{node(), reference()}]) -> ok.
acknowledged([]) ->
    ok;
acknowledged(Tags) ->
    ByNode = lists:foldl(
               fun({Node, Ref}, Acc) ->
                       maps:update_with(Node, fun(Refs) -> [Ref | Refs] end, [Ref], Acc)
               end, #{}, Tags),
    maps:foreach(
      fun(Node, Refs) ->
              try erlang:send({?LEDGER, Node}, {acked, Refs}, [noconnect])
              catch error:badarg -> ok   % no ledger on this node (module stopped)
              end
      end, ByNode).

init([]) ->
    process_flag(trap_exit, true),
    ets:new(?LEDGER, [named_table, public, set, {write_concurrency, true}]),
    ets:new(?WATCHED, [named_table, public, set, {write_concurrency, true}]),
    {ok, #{}}.

handle_call(_Request, _From, State) ->
    {reply, {error, badarg}, State}.

handle_cast({watch, Pid}, State) ->
    erlang:monitor(process, Pid),
    {noreply, State};
handle_cast(_Msg, State) ->
    {noreply, State}.

handle_info({acked, Refs}, State) ->
    lists:foreach(fun(Ref) -> ets:delete(?LEDGER, Ref) end, Refs),
    {noreply, State};
handle_info({'DOWN', _MRef, process, Pid, Reason}, State) ->
    %% First the watch, then the sweep: a sender that inserts an entry for
    %% Pid after the sweep looked inserts it before its insert_new(Watched),
    %% which then succeeds and makes a new monitor (an immediate DOWN, noproc
    %% or noconnection) sweep it.
    ets:delete(?WATCHED, Pid),
    Keys = lists:sort(ets:select(?LEDGER, [{{'$1', Pid, '$2', '_'}, [], [{{'$2', '$1'}}]}])),
    %% Only what this sweep takes is routed (a sender whose send failed may
    %% take its entry back meanwhile).
    Pkts = [Pkt || {_, Ref} <- Keys, {_, _, _, Pkt} <- ets:take(?LEDGER, Ref)],
    put(?DEAD, Pid),
    try lists:foreach(fun ejabberd_router:route/1, Pkts)
    after erase(?DEAD)
    end,
    Pkts /= [] andalso
        ?INFO_MSG("~ts: routed again ~B stanza(s) not acknowledged by ~p (~p)",
                  [?MODULE, length(Pkts), Pid, Reason]),
    {noreply, State};
handle_info(_Info, State) ->
    {noreply, State}.

terminate(_Reason, _State) ->
    case ets:info(?LEDGER, size) of
        N when is_integer(N), N > 0 ->
            ?WARNING_MSG("~ts: stopping with ~B stanza(s) not yet acknowledged; "
                         "they are no longer kept", [?MODULE, N]);
        _ ->
            ok
    end.

code_change(_OldVsn, State, _Extra) ->
    {ok, State}.
