/*
 * libstrophe XEP-0114 echo component: answers every <message/> that has a body with the
 * same stanza, from and to swapped (id and body kept).
 *
 *   strophe-echo HOST PORT HOSTNAME SECRET
 *
 * Workaround for Debian's libstrophe 0.12.2: in component mode the library never creates
 * the connection's stream-management state (conn->sm_state) but dereferences it for every
 * stanza it receives (_handle_stream_stanza: conn->sm_state->sm_enabled), so a component
 * crashes on its first stanza. xmpp_connect_client() does create that state (a fresh
 * connection object has none: xmpp_conn_get_sm_state() returns NULL). So we start a
 * throw-away *client* connection to a closed loopback port (127.0.0.1:1, refused at
 * once), run the event loop until it is disconnected, take its state with the public
 * xmpp_conn_get_sm_state() (which detaches it) and give it to the component connection
 * with xmpp_conn_set_sm_state() before connecting. Stream management is never negotiated
 * in component mode, so the state stays zeroed and unused.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strophe.h>

static int message_handler(xmpp_conn_t *conn, xmpp_stanza_t *stanza, void *userdata) {
    (void)userdata;
    const char *type = xmpp_stanza_get_type(stanza);
    if (type && strcmp(type, "error") == 0) return 1;
    if (!xmpp_stanza_get_child_by_name(stanza, "body")) return 1;
    const char *from = xmpp_stanza_get_from(stanza);
    const char *to = xmpp_stanza_get_to(stanza);
    if (!from || !to) return 1;
    xmpp_stanza_t *reply = xmpp_stanza_copy(stanza);
    char *from_copy = strdup(from);
    xmpp_stanza_set_from(reply, to);
    xmpp_stanza_set_to(reply, from_copy);
    free(from_copy);
    xmpp_send(conn, reply);
    xmpp_stanza_release(reply);
    return 1;
}

static void donor_handler(xmpp_conn_t *conn, xmpp_conn_event_t status, int error,
                          xmpp_stream_error_t *stream_error, void *userdata) {
    (void)conn; (void)status; (void)error; (void)stream_error; (void)userdata;
}

static void connection_handler(xmpp_conn_t *conn, xmpp_conn_event_t status, int error,
                               xmpp_stream_error_t *stream_error, void *userdata) {
    (void)stream_error;
    xmpp_ctx_t *ctx = userdata;
    if (status == XMPP_CONN_CONNECT) {
        fprintf(stderr, "strophe-echo: connected\n");
        xmpp_handler_add(conn, message_handler, NULL, "message", NULL, ctx);
    } else {
        fprintf(stderr, "strophe-echo: disconnected (error %d)\n", error);
        xmpp_stop(ctx);
    }
}

int main(int argc, char **argv) {
    if (argc != 5) { fprintf(stderr, "usage: strophe-echo HOST PORT HOSTNAME SECRET\n"); return 2; }
    xmpp_initialize();
    xmpp_ctx_t *ctx = xmpp_ctx_new(NULL, xmpp_get_default_logger(XMPP_LEVEL_ERROR));

    /* The workaround (see above). */
    xmpp_conn_t *donor = xmpp_conn_new(ctx);
    xmpp_conn_set_jid(donor, "donor@localhost");
    xmpp_conn_set_pass(donor, "unused");
    xmpp_connect_client(donor, "127.0.0.1", 1, donor_handler, NULL);
    for (int i = 0; i < 500 && !xmpp_conn_is_disconnected(donor); i++) xmpp_run_once(ctx, 10);
    xmpp_sm_state_t *sm_state = xmpp_conn_get_sm_state(donor);
    xmpp_conn_t *conn = xmpp_conn_new(ctx);
    if (!sm_state || xmpp_conn_set_sm_state(conn, sm_state) != XMPP_EOK) {
        fprintf(stderr, "strophe-echo: cannot set the stream-management state\n");
        return 1;
    }
    xmpp_conn_release(donor);

    xmpp_conn_set_jid(conn, argv[3]);
    xmpp_conn_set_pass(conn, argv[4]);
    if (xmpp_connect_component(conn, argv[1], (unsigned short)atoi(argv[2]), connection_handler, ctx) != XMPP_EOK) {
        fprintf(stderr, "strophe-echo: cannot connect\n");
        return 1;
    }
    xmpp_run(ctx);
    xmpp_conn_release(conn);
    xmpp_ctx_free(ctx);
    xmpp_shutdown();
    return 0;
}
