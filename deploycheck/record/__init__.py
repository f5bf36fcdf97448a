"""The deployment record: ledger, compose, render, sign, verify."""
