"""Round trips held to what each adapter declares it preserves: the conformance product."""
