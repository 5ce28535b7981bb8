"""Test user agents (pjsua2 in subprocesses) for end-to-end tests."""
