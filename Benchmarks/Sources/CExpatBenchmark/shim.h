// expat for the benchmark's bare-parser baseline.
#ifndef CEXPAT_BENCHMARK_SHIM_H
#define CEXPAT_BENCHMARK_SHIM_H
#include <expat.h>
#include <dlfcn.h>

// Same as the root package's cxmpp_expat_disable_reparse_deferral: the baseline must
// run with reparse deferral off, as XMLStreamParser does.
static inline int cxmppbench_disable_reparse_deferral(XML_Parser parser) {
    typedef XML_Bool (*set_deferral_fn)(XML_Parser, XML_Bool);
    set_deferral_fn fn = (set_deferral_fn)dlsym(RTLD_DEFAULT, "XML_SetReparseDeferralEnabled");
    if (fn == NULL) {
        return 0;
    }
    return fn(parser, XML_FALSE) == XML_TRUE ? 1 : 0;
}
#endif
