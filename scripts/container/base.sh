# Builds the runtime base image from the host's own files, with no registry: the dynamic
# libraries the given binaries load (as `ldd` lists them), /etc/passwd and /etc/group with
# root and `nonroot` (65532, as distroless's), and a /tmp. The same shape as distroless
# `cc`: glibc and libgcc_s, no shell, no package manager.
#
#   build_base IMAGE BINARY...
#
# `as_root` (scripts/test-container) runs podman as root: the pod test publishes ports and
# hands the store directory to the image's user, which rootless podman cannot.
build_base() {
  local image="$1"; shift
  local root lib
  root="$(mktemp -d -t hookrelay-base.XXXXXX)"
  mkdir -p "$root/etc" "$root/tmp"
  chmod 1777 "$root/tmp"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' >"$root/etc/group"
  for lib in $(ldd "$@" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
  # The dynamic loader's canonical path, whatever path ldd printed it by.
  if [ -e /lib64/ld-linux-x86-64.so.2 ] && [ ! -e "$root/lib64/ld-linux-x86-64.so.2" ]; then
    mkdir -p "$root/lib64"; cp -L /lib64/ld-linux-x86-64.so.2 "$root/lib64/"
  fi
  tar -C "$root" -c . | as_root podman import --quiet - "$image" >/dev/null
  rm -rf "$root"
}
