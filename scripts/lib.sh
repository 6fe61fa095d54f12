# Shared helpers of the scripts: install what is missing, loudly.

# apt-get install, as root or through sudo.
apt_install() {
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "need root or sudo to install: $*" >&2; exit 1; }
    sudo="sudo"
  fi
  echo "installing: $*" >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

# ensure_cmd COMMAND PACKAGE: install PACKAGE when COMMAND is missing.
ensure_cmd() {
  command -v "$1" >/dev/null 2>&1 || apt_install "$2"
  command -v "$1" >/dev/null 2>&1 || { echo "$1 is still missing after installing $2" >&2; exit 1; }
}

ensure_rust() {
  if ! command -v cargo >/dev/null 2>&1; then
    [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
  fi
  command -v cargo >/dev/null 2>&1 || {
    echo "cargo is missing: install Rust with rustup (https://rustup.rs)" >&2
    exit 1
  }
}
