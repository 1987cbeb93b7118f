"""The hub: many untrusted contributors, trusted verifiers, a verified chain and a leaderboard."""
