"""Conformance suites per partner: the case model and suite loading (pure), the generators,
the runner (`gncgw conformance run`), the test endpoint (`listen`), reports (JUnit, HTML, JSON,
Test Bed TAR, conformance statement) and recorded runs for promotion. See docs/conformance.md."""
