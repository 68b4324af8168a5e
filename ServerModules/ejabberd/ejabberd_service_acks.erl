%%%----------------------------------------------------------------------
%%% ejabberd_service_acks: ejabberd's XEP-0114 listener (ejabberd_service)
%%% plus XEP-0198-style acknowledgements of the stanzas the server writes,
%%% a project extension that a component opts in to.  For ejabberd 23.01
%%% (Debian 12), with mod_component_balancing (same directory).
%%%
%%% A thin callback module of xmpp_stream_in: every callback is
%%% ejabberd_service's, this module only adds the acknowledgements.  Use it
%%% in place of ejabberd_service, with the same options:
%%%
%%%   listen:
%%%     -
%%%       port: 5275
%%%       module: ejabberd_service_acks
%%%       tls: true
%%%       hosts: {"search.example.com": {password: "…"}}
%%%
%%% Wire protocol, after the <handshake/> success (both sides count the
%%% stanzas, message/presence/iq, the SERVER writes from then on, from 0):
%%%
%%%   C: <enable xmlns='urn:xmpp:sm:3'/>
%%%   S: <enabled xmlns='urn:xmpp:sm:3'/>      (no id, no resumption)
%%%      a second enable: <failed xmlns='urn:xmpp:sm:3'>
%%%                         <unexpected-request xmlns='…xmpp-stanzas'/></failed>
%%%   C: <a xmlns='urn:xmpp:sm:3' h='N'/>      N stanzas handled, mod 2^32
%%%      h beyond what was written: stream error undefined-condition with
%%%      <handled-count-too-high xmlns='urn:xmpp:sm:3' h='N' send-count='S'/>;
%%%      h going backwards: ignored (warning)
%%%   C: <r xmlns='urn:xmpp:sm:3'/>
%%%   S: <a xmlns='urn:xmpp:sm:3' h='M'/>      M stanzas received from the
%%%                                            component, mod 2^32
%%%
%%% (A plain ejabberd_service ignores these elements: a component sends <a/>
%%% only once it has seen <enabled/>.)  <a/> and <r/> before <enable/> are
%%% ignored with a warning.
%%%
%%% What is remembered: a stanza routed here by mod_component_balancing
%%% carries a ledger tag {OriginNode, Ref} in its meta (never on the wire);
%%% the stream keeps {N, Tag} for every tagged stanza it writes, and an <a/>
%%% covering N sends {acked, [Ref…]} to mod_component_balancing_ledger on
%%% OriginNode, which forgets the stanza.  When this process ends, the
%%% ledger sees it DOWN and routes again what was not acknowledged.  The
%%% stream joins the pg group (mod_component_balancing, acked) at <enable/>,
%%% not before: only then does mod_component_balancing tag what it sends
%%% here (a tagged stanza reaching a connection that has not enabled is
%%% released at once: it never promised to acknowledge).  Limit: an enabled
%%% connection with more than 50 000 unacknowledged tagged stanzas is closed
%%% with resource-constraint.
%%%----------------------------------------------------------------------
-module(ejabberd_service_acks).
-behaviour(xmpp_stream_in).
-behaviour(ejabberd_listener).

%% ejabberd_listener callbacks
-export([start/3, start_link/3, accept/1, listen_opt_type/1, listen_options/0]).
%% xmpp_stream_in callbacks (ejabberd_service's, and handle_send/handle_recv)
-export([init/1, handle_info/2, terminate/2, code_change/3]).
-export([handle_stream_start/2, handle_auth_success/4, handle_auth_failure/4,
         handle_authenticated_packet/2, get_password_fun/1, tls_options/1,
         handle_send/3, handle_recv/3]).

-include("xmpp.hrl").
-include("logger.hrl").

-define(TAG, mod_component_balancing_tag).
-define(SCOPE, mod_component_balancing).
-define(GROUP, acked).
-define(MOD32, 16#FFFFFFFF).
%% Unacknowledged tagged stanzas an enabled connection may have.
-define(MAX_UNACKED, 50000).

%%%===================================================================
%%% ejabberd_listener
%%%===================================================================
start(SockMod, Socket, Opts) ->
    xmpp_stream_in:start(?MODULE, [{SockMod, Socket}, Opts],
                         ejabberd_config:fsm_limit_opts(Opts)).

start_link(SockMod, Socket, Opts) ->
    xmpp_stream_in:start_link(?MODULE, [{SockMod, Socket}, Opts],
                              ejabberd_config:fsm_limit_opts(Opts)).

accept(Ref) ->
    ejabberd_service:accept(Ref).

listen_opt_type(Opt) ->
    ejabberd_service:listen_opt_type(Opt).

listen_options() ->
    ejabberd_service:listen_options().

%%%===================================================================
%%% xmpp_stream_in: ejabberd_service's callbacks
%%%===================================================================
init(Args) ->
    ejabberd_service:init(Args).

tls_options(State) ->
    ejabberd_service:tls_options(State).

handle_stream_start(StreamStart, State) ->
    ejabberd_service:handle_stream_start(StreamStart, State).

get_password_fun(State) ->
    ejabberd_service:get_password_fun(State).

handle_auth_failure(User, Mech, Reason, State) ->
    ejabberd_service:handle_auth_failure(User, Mech, Reason, State).

code_change(OldVsn, State, Extra) ->
    ejabberd_service:code_change(OldVsn, State, Extra).

%% Authenticated: counting starts (the <handshake/> success written after
%% this is not a stanza).
handle_auth_success(User, Mech, AuthModule, State) ->
    State1 = ejabberd_service:handle_auth_success(User, Mech, AuthModule, State),
    State1#{acks_out => 0,            % stanzas written
            acks_in => 0,             % stanzas received
            acks_h => 0,              % stanzas acknowledged (not modulo)
            acks_queue => queue:new(),% {N, Tag} of tagged stanzas written
            acks_len => 0,
            acks_mode => pending}.    % pending | enabled

%%%===================================================================
%%% Acknowledgements
%%%===================================================================
handle_authenticated_packet(#sm_enable{}, State) ->
    enable(State);
handle_authenticated_packet(#sm_a{h = H}, State) ->
    acknowledge(H, State);
handle_authenticated_packet(#sm_r{}, #{acks_mode := enabled, acks_in := In} = State) ->
    xmpp_stream_in:send(State, #sm_a{h = In band ?MOD32, xmlns = ?NS_STREAM_MGMT_3});
handle_authenticated_packet(#sm_r{}, State) ->
    ?WARNING_MSG("~ts: <r/> before <enable/> from ~ts: ignored", [?MODULE, peer(State)]),
    State;
handle_authenticated_packet(Pkt, #{acks_in := In} = State) when ?is_stanza(Pkt) ->
    ejabberd_service:handle_authenticated_packet(Pkt, State#{acks_in => In + 1});
handle_authenticated_packet(Pkt, State) ->
    ejabberd_service:handle_authenticated_packet(Pkt, State).

%% An <enable/>, <a/> or <r/> that does not decode (<a h='x'/>, no h) is a
%% stream error, not silently ignored as xmpp_stream_in does with unknown
%% non-stanzas.
handle_recv(El, {error, Why}, #{lang := Lang} = State) ->
    case xmpp:get_ns(El) of
        ?NS_STREAM_MGMT_3 ->
            ?WARNING_MSG("~ts: malformed acknowledgement element from ~ts: ~ts",
                         [?MODULE, peer(State), xmpp:format_error(Why)]),
            xmpp_stream_in:send(State, xmpp:serr_bad_format(xmpp:io_format_error(Why), Lang));
        _ ->
            State
    end;
handle_recv(_El, #sm_a{h = H}, #{stream_state := disconnected, acks_mode := enabled,
                                 acks_h := Acked, acks_out := Out} = State)
  when H =< ?MOD32 ->
    %% Read after the socket closed (its data parsed after the close was
    %% seen): xmpp_stream_in no longer processes it, but what it acknowledges
    %% was handled and must not be routed again.
    Diff = (H - Acked) band ?MOD32,
    if Diff > 0, Diff =< Out - Acked -> drop_acked(Acked + Diff, State#{acks_h => Acked + Diff});
       true -> State
    end;
handle_recv(_El, _Pkt, State) ->
    State.

enable(#{acks_mode := enabled} = State) ->
    xmpp_stream_in:send(State, #sm_failed{reason = 'unexpected-request',
                                          xmlns = ?NS_STREAM_MGMT_3});
enable(#{acks_mode := _} = State) ->
    %% Joined now, not earlier: mod_component_balancing tags (and keeps) only
    %% what it sends to the group's members.
    try pg:join(?SCOPE, ?GROUP, self())
    catch _:Why ->
            ?WARNING_MSG("~ts: cannot join the pg group of mod_component_balancing "
                         "(~p): stanzas to ~ts are not kept until acknowledged "
                         "(is mod_component_balancing enabled?)",
                         [?MODULE, Why, peer(State)])
    end,
    xmpp_stream_in:send(State#{acks_mode => enabled},
                        #sm_enabled{xmlns = ?NS_STREAM_MGMT_3});
enable(State) ->
    %% Not authenticated (cannot happen: only established streams get here).
    State.

acknowledge(H, #{acks_mode := enabled, acks_h := Acked, acks_out := Out} = State)
  when H =< ?MOD32 ->
    Diff = (H - Acked) band ?MOD32,
    if Diff == 0 ->
            State;
       Diff =< Out - Acked ->
            drop_acked(Acked + Diff, State#{acks_h => Acked + Diff});
       Diff > ?MOD32 bsr 1 ->
            ?WARNING_MSG("~ts: ~ts acknowledged h=~B after h=~B (going backwards): "
                         "ignored", [?MODULE, peer(State), H, Acked band ?MOD32]),
            State;
       true ->
            too_high(H, State)
    end;
acknowledge(H, #{acks_mode := enabled} = State) ->
    too_high(H, State);
acknowledge(_H, State) ->
    ?WARNING_MSG("~ts: <a/> before <enable/> from ~ts: ignored", [?MODULE, peer(State)]),
    State.

%% XEP-0198 §4: undefined-condition with <handled-count-too-high/>.  The
%% xmpp library's stream_error record has no room for it: the element is
%% written as XML, then the stream ends the way xmpp_stream_in ends it
%% after a stream error (disconnected, stopped; the trailer is written by
%% its terminate).
too_high(H, #{acks_out := Out, lang := Lang} = State) ->
    SendCount = Out band ?MOD32,
    ?WARNING_MSG("~ts: ~ts acknowledged h=~B, but only ~B stanza(s) were sent: "
                 "closing the stream", [?MODULE, peer(State), H, SendCount]),
    #xmlel{children = Children} = El =
        xmpp:encode(xmpp:serr_undefined_condition(
                      <<"Acknowledged more stanzas than were sent">>, Lang),
                    ?NS_COMPONENT),
    Detail = #xmlel{name = <<"handled-count-too-high">>,
                    attrs = [{<<"xmlns">>, ?NS_STREAM_MGMT_3},
                             {<<"h">>, integer_to_binary(H)},
                             {<<"send-count">>, integer_to_binary(SendCount)}]},
    State1 = xmpp_stream_in:send(State, El#xmlel{children = Children ++ [Detail]}),
    xmpp_stream_in:stop_async(self()),
    State1#{stream_state => disconnected, stream_timeout => infinity}.

%% Every tagged stanza numbered up to Upto is acknowledged.
drop_acked(Upto, #{acks_queue := Q, acks_len := Len} = State) ->
    {Tags, Q1, N} = pop(Upto, Q, [], 0),
    release(Tags),
    State#{acks_queue => Q1, acks_len => Len - N}.

pop(Upto, Q, Tags, N) ->
    case queue:peek(Q) of
        {value, {M, Tag}} when M =< Upto -> pop(Upto, queue:drop(Q), [Tag | Tags], N + 1);
        _ -> {lists:reverse(Tags), Q, N}
    end.

%%%===================================================================
%%% Counting what is written
%%%===================================================================
%% Called by xmpp_stream_in after every write, with its result (a stanza
%% whose write failed is counted too: the stream is going away, and the
%% ledger routes it again).
handle_send(Pkt, _Result, #{acks_out := Out} = State) when ?is_stanza(Pkt) ->
    N = Out + 1,
    case xmpp:get_meta(Pkt, ?TAG, undefined) of
        {Node, _} = Tag when is_atom(Node) -> keep(N, Tag, State#{acks_out => N});
        _ -> State#{acks_out => N}
    end;
handle_send(_Pkt, _Result, State) ->
    State.

%% Only a connection that enabled acknowledges: a tag reaching one that has
%% not (mod_component_balancing tags only for members of the pg group, which
%% a connection joins at <enable/>) is released at once, as delivered.
keep(_N, Tag, #{acks_mode := Mode} = State) when Mode /= enabled ->
    release([Tag]),
    State;
keep(N, Tag, #{acks_queue := Q, acks_len := Len, lang := Lang} = State) ->
    Len1 = Len + 1,
    State1 = State#{acks_queue => queue:in({N, Tag}, Q), acks_len => Len1},
    if Len1 == ?MAX_UNACKED + 1 ->
            ?WARNING_MSG("~ts: ~ts has ~B unacknowledged stanzas: closing the stream",
                         [?MODULE, peer(State), Len1]),
            xmpp_stream_in:send(State1, xmpp:serr_resource_constraint(
                                          <<"Too many unacknowledged stanzas">>, Lang));
       true ->
            State1
    end.

%% A stanza routed here that ejabberd_service does not write (refused by the
%% listener's `access'; it bounces it) is released at once.
handle_info({route, Pkt} = Info, #{acks_out := Out} = State) ->
    State1 = ejabberd_service:handle_info(Info, State),
    case maps:get(acks_out, State1, Out) of
        Out -> release_tag(Pkt);
        _ -> ok
    end,
    State1;
handle_info(Info, State) ->
    ejabberd_service:handle_info(Info, State).

release_tag(Pkt) ->
    case xmpp:get_meta(Pkt, ?TAG, undefined) of
        {Node, _} = Tag when is_atom(Node) -> release([Tag]);
        _ -> ok
    end.

%% ejabberd_service's terminate unregisters the routes and runs
%% component_disconnected (mod_component_balancing routes the mailbox again).
%% What was written and not acknowledged is routed again by the ledger when
%% it sees this process DOWN, not here: one owner, no duplicates.  A
%% connection that never enabled does not acknowledge: its stanzas count as
%% delivered.
terminate(Reason, #{acks_mode := Mode, acks_queue := Q, acks_len := Len} = State) ->
    case Mode of
        enabled when Len > 0 ->
            ?INFO_MSG("~ts: ~ts closed (~p) with ~B unacknowledged stanza(s); "
                      "mod_component_balancing routes them again",
                      [?MODULE, peer(State), Reason, Len]);
        enabled ->
            ok;
        _ ->
            release([T || {_, T} <- queue:to_list(Q)])
    end,
    ejabberd_service:terminate(Reason, State);
terminate(Reason, State) ->
    ejabberd_service:terminate(Reason, State).

%% To the ledgers (mod_component_balancing, which put the tags there).
release([]) -> ok;
release(Tags) -> mod_component_balancing:acknowledged(Tags).

peer(#{remote_server := Server}) -> Server;
peer(_) -> <<"a component">>.
