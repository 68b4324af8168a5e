// UTF-8 -> JID(_:).
//
// Oracles (fatalError = crash = finding), for every string that parses:
// - normalisation is idempotent: JID(jid.description) == jid, with the same description;
// - the parts agree with the part-wise initialiser: JID(localpart:domainpart:resourcepart:)
//   of the normalised parts is the same JID;
// - bare/domain/withResource stay consistent.

import XMPPCore

/// FuzzJID's oracle (see the file's notes).
public enum JIDOracle {
    /// Checks one input; throws ``FuzzFinding`` when a property is broken.
    public static func check(_ bytes: UnsafeBufferPointer<UInt8>) throws {
        let string = String(decoding: bytes, as: UTF8.self)
        guard let jid = try? JID(string) else { return }
        let description = jid.description
        guard let again = try? JID(description) else {
            throw FuzzFinding("JID(\(string.debugDescription)) = \(description.debugDescription) does not parse again")
        }
        guard again == jid, again.description == description else {
            throw FuzzFinding(
                "JID(\(string.debugDescription)) = \(description.debugDescription) normalises again to \(again.description.debugDescription)"
            )
        }
        guard let parts = try? JID(localpart: jid.localpart, domainpart: jid.domainpart, resourcepart: jid.resourcepart) else {
            throw FuzzFinding("JID parts of \(description.debugDescription) are rejected")
        }
        guard parts == jid else {
            throw FuzzFinding("JID parts of \(description.debugDescription) give \(parts.description.debugDescription)")
        }
        if jid.bare.resourcepart != nil || jid.bare.domainpart != jid.domainpart || !jid.domain.isDomain {
            throw FuzzFinding("bare/domain of \(description.debugDescription) are inconsistent")
        }
        if let resource = jid.resourcepart {
            guard (try? jid.bare.withResource(resource)) == jid else {
                throw FuzzFinding("withResource(\(resource.debugDescription)) on \(description.debugDescription) differs")
            }
        }
    }
}
