"""Accounts and sessions: users, passwords, sign-in throttles, sessions, the audit log."""
