# Sourced (not run): puts the project-local tools of scripts/install-tools.sh
# on PATH for this shell and what it starts (cargo test inherits it).
_k6ts_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
case ":$PATH:" in
  *":$_k6ts_root/.venv/bin:"*) ;;
  *) export PATH="$_k6ts_root/.venv/bin:$PATH" ;;
esac
unset _k6ts_root
