import XMPPCore

/// XEP-0225 hostname binding: the `<bind/>` and `<unbind/>` IQ payloads.
enum HostnameBinding {
    /// A bind request; `weight` (this project's balancing extension) is written as the
    /// `weight` attribute of `<hostname/>` in ``/XMPPCore/Namespace/componentBalancing``.
    static func bindRequest(id: String, hostname: String, weight: Int? = nil) -> IQ {
        var payload = self.payload("bind", hostname: hostname)
        if let weight, case .element(var element) = payload.children[0] {
            element.setAttribute(QualifiedName(Namespace.componentBalancing, "weight"), String(weight))
            payload.children[0] = .element(element)
        }
        return IQ(type: .set, id: id, payload: payload)
    }

    static func unbindRequest(id: String, hostname: String) -> IQ {
        IQ(type: .set, id: id, payload: self.payload("unbind", hostname: hostname))
    }

    /// The hostname a bind result carries, or `nil` when it carries none.
    static func boundHostname(in result: IQ) -> String? {
        guard let bind = result.element.firstChild("bind", namespace: Namespace.component),
            let hostname = bind.firstChild("hostname", namespace: Namespace.component)
        else { return nil }
        let text = hostname.text.trimmingWhitespace()
        return text.isEmpty ? nil : text
    }

    private static func payload(_ name: String, hostname: String) -> Element {
        Element(
            name, namespace: Namespace.component,
            children: [Element("hostname", namespace: Namespace.component, text: hostname)])
    }
}

extension String {
    func trimmingWhitespace() -> String {
        let scalars = self.unicodeScalars
        guard let first = scalars.firstIndex(where: { !$0.properties.isWhitespace }),
            let last = scalars.lastIndex(where: { !$0.properties.isWhitespace })
        else { return "" }
        return String(scalars[first...last])
    }
}
