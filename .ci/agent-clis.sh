#!/usr/bin/env bash
# Install the coding-agent CLIs the agent tests drive, at the versions docs/agents.md names, into a
# cached prefix (npm --prefix, and a venv for aider). A package that cannot be installed is reported
# and skipped: its tests then skip with the reason. Re-running with everything in place is quick.
set -uo pipefail
PREFIX="${OVERNIGHT_AGENT_CLIS:-$HOME/.cache/overnight-agent-clis}"
NPM_PKGS=("@anthropic-ai/claude-code@2.1.197" "@openai/codex@0.171.0" "opencode-ai@1.18.33" "@google/gemini-cli@0.61.0")
AIDER="aider-chat==0.86.2"
mkdir -p "$PREFIX"
status=0
if command -v npm >/dev/null; then
  for pkg in "${NPM_PKGS[@]}"; do
    name="${pkg%@*}"
    want="${pkg##*@}"
    have=$(node -p "require('$PREFIX/node_modules/$name/package.json').version" 2>/dev/null || true)
    if [ "$have" != "$want" ]; then
      npm install --prefix "$PREFIX" --no-audit --no-fund --loglevel=error "$pkg" >/dev/null \
        || { echo "agent-clis: could not install $pkg" >&2; status=1; }
    fi
  done
else
  echo "agent-clis: npm not found; the claude, codex, opencode and gemini tests will skip" >&2
fi
if ! "$PREFIX/aider-venv/bin/aider" --version 2>/dev/null | grep -q "${AIDER##*==}"; then
  { python3 -m venv "$PREFIX/aider-venv" && "$PREFIX/aider-venv/bin/pip" install -q "$AIDER" >/dev/null; } \
    || { echo "agent-clis: could not install $AIDER" >&2; status=1; }
fi
echo "agent-clis: installed under $PREFIX (status $status)"
exit 0  # a missing CLI makes its tests skip with the reason, never the whole run fail
