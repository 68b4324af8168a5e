// UTF-8 -> JID(_:).
//
// Oracles (fatalError = crash = finding), for every string that parses:
// - normalisation is idempotent: JID(jid.description) == jid, with the same description;
// - the parts agree with the part-wise initialiser: JID(localpart:domainpart:resourcepart:)
//   of the normalised parts is the same JID;
// - bare/domain/withResource stay consistent.

import FuzzSupport
import XMPPCore

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzJID(_ start: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    let bytes = UnsafeBufferPointer(start: start, count: count)
    let string = String(decoding: bytes, as: UTF8.self)
    guard let jid = try? JID(string) else { return 0 }
    let description = jid.description
    let again: JID
    do {
        again = try JID(description)
    } catch {
        fatalError("JID(\(string.debugDescription)) = \(description.debugDescription) does not parse again: \(error)")
    }
    guard again == jid, again.description == description else {
        fatalError("JID(\(string.debugDescription)) = \(description.debugDescription) normalises again to \(again.description.debugDescription)")
    }
    do {
        let parts = try JID(localpart: jid.localpart, domainpart: jid.domainpart, resourcepart: jid.resourcepart)
        guard parts == jid else {
            fatalError("JID parts of \(description.debugDescription) give \(parts.description.debugDescription)")
        }
    } catch {
        fatalError("JID parts of \(description.debugDescription) are rejected: \(error)")
    }
    if jid.bare.resourcepart != nil || jid.bare.domainpart != jid.domainpart || !jid.domain.isDomain {
        fatalError("bare/domain of \(description.debugDescription) are inconsistent")
    }
    if let resource = jid.resourcepart {
        guard (try? jid.bare.withResource(resource)) == jid else {
            fatalError("withResource(\(resource.debugDescription)) on \(description.debugDescription) differs")
        }
    }
    return 0
}

runFuzzer(fuzzJID)
