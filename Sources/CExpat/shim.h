// expat (libexpat1-dev) for XMPPStream, the only module that imports it.
#ifndef CEXPAT_SHIM_H
#define CEXPAT_SHIM_H
#include <expat.h>
#include <dlfcn.h>

// Debian's expat 2.5.0 (+deb12u5 and later) carries the backported "reparse
// deferral" of expat 2.6.0 (CVE-2023-52425), enabled by default: small network
// reads can then leave a complete stream header or stanza unreported inside
// the parser. Older builds lack the symbol and the version macros cannot tell
// the two apart, so it is looked up at run time. Returns 1 when deferral was
// switched off, 0 when this expat has no such feature.
static inline int cxmpp_expat_disable_reparse_deferral(XML_Parser parser) {
    typedef XML_Bool (*set_deferral_fn)(XML_Parser, XML_Bool);
    set_deferral_fn fn = (set_deferral_fn)dlsym(RTLD_DEFAULT, "XML_SetReparseDeferralEnabled");
    if (fn == NULL) {
        return 0;
    }
    return fn(parser, XML_FALSE) == XML_TRUE ? 1 : 0;
}
#endif
