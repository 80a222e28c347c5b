"""Destination policies: pure parsers, matchers and builders (SEMANTICS section 5).

``mtasts`` parses MTA-STS TXT records and policy documents and matches MX hosts
(RFC 8461); ``dane`` parses TLSA records and matches a presented certificate chain
against them (RFC 6698, 7671, 7672); ``tlsrpt`` builds aggregate TLS-RPT reports
(RFC 8460).  Nothing here opens a socket or a file, queries DNS or reads the clock:
the caller fetches, and passes ``now`` where time matters.
"""
