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

# free_ports N: N distinct ports nothing listens on now, for processes to bind later,
# printed on one line. Taken below the kernel's ephemeral range (where clients and
# sockets bound to port 0 get theirs, so nothing takes them in the meantime), from a
# random start, each checked bindable while the others are held: two calls of a single
# port each could name the same port twice.
free_ports() {
  python3 - "$1" <<'EOF_'
import random, socket, sys
n = int(sys.argv[1])
with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
    ephemeral = int(f.read().split()[0])
low, high = 10000, max(ephemeral, 10001)
held, start = [], random.randrange(low, high)
for i in range(high - low):
    port = low + (start - low + i) % (high - low)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        s.close()
        continue
    held.append(s)
    if len(held) == n:
        break
if len(held) < n:
    sys.exit(f"free_ports: fewer than {n} free ports in {low}..{high}")
print(" ".join(str(s.getsockname()[1]) for s in held))
for s in held:
    s.close()
EOF_
}
