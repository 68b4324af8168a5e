// gloox XEP-0114 echo component: answers every <message/> that has a body with the same
// body and id, from and to swapped.
//
//   gloox-echo HOST PORT HOSTNAME SECRET
#include <gloox/component.h>
#include <gloox/connectionlistener.h>
#include <gloox/message.h>
#include <gloox/messagehandler.h>

#include <cstdio>
#include <cstdlib>
#include <string>

using namespace gloox;

class Echo : public MessageHandler, public ConnectionListener {
public:
    explicit Echo(Component &component) : component(component) {}

    void handleMessage(const Message &message, MessageSession *) override {
        if (message.subtype() == Message::Error || message.body().empty()) return;
        Message reply(message.subtype(), message.from(), message.body());
        reply.setID(message.id());
        reply.setFrom(message.to());
        component.send(reply);
    }

    void onConnect() override { std::fprintf(stderr, "gloox-echo: connected\n"); }
    void onDisconnect(ConnectionError error) override { std::fprintf(stderr, "gloox-echo: disconnected (%d)\n", error); }
    bool onTLSConnect(const CertInfo &) override { return true; }

private:
    Component &component;
};

int main(int argc, char **argv) {
    if (argc != 5) { std::fprintf(stderr, "usage: gloox-echo HOST PORT HOSTNAME SECRET\n"); return 2; }
    Component component(XMLNS_COMPONENT_ACCEPT, argv[1], argv[3], argv[4], std::atoi(argv[2]));
    Echo echo(component);
    component.registerMessageHandler(&echo);
    component.registerConnectionListener(&echo);
    component.connect(true);
    return 0;
}
