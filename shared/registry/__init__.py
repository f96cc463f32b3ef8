"""The agreement registry: institutions, agreements, coverage lines, usage ledger."""
