#!/usr/bin/env bash
# Builds the closest thing to Scaleway's python311 runtime that this machine can have: CPython 3.11 linked against
# musl with musl-gcc, from Debian's sources, and two musl loaders to run it with (1.2.3 from Debian bookworm, as in
# Alpine 3.17; 1.2.5 from Debian trixie, as in Alpine 3.20+). tests/musl/test_package_on_musl.py loads package/
# with each. Everything is pinned by SHA-256 and cached in $MUSL_RUNTIME_DIR: a second run costs nothing.
set -euo pipefail

RUNTIME_DIR="${MUSL_RUNTIME_DIR:-$HOME/.cache/privacy-functions/musl-runtime}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
BUILD_ID="cpython-3.11.2+openssl-3.0.20+zlib-1.2.13+libffi-3.4.4+musl-1.2.3/1.2.5 v1"

if [ "$(cat "$RUNTIME_DIR/.built" 2>/dev/null)" = "$BUILD_ID" ]; then
  echo "musl runtime: cached in $RUNTIME_DIR"
  exit 0
fi

sources=(
  "pool/main/p/python3.11/python3.11_3.11.2.orig.tar.gz 2411c74bda5bbcfcddaf4531f66d1adc73f247f529aee981b029513aefdbf849"
  "pool/main/o/openssl/openssl_3.0.20.orig.tar.gz c80a01dfc70ece4dc21168932c37739042d404d46ccc81a5986dd75314ecda6f"
  "pool/main/z/zlib/zlib_1.2.13.dfsg.orig.tar.bz2 71feb7947e3c00ef125f83b79a4e529bde31171e5babe48b391f06758d1ab0a1"
  "pool/main/libf/libffi/libffi_3.4.4.orig.tar.gz d66c56ad259a82cf2a9dfc408b32bf5da52371500b84745f7fb8b645712df676"
  "pool/main/m/musl/musl_1.2.5-3.1~deb13u1_amd64.deb fd4231e1c189c0ebe01182747f83817593fefa7f6b690c484410646288b60058"
)

if ! command -v musl-gcc >/dev/null; then
  apt-get update -q && apt-get install -y -q musl musl-dev musl-tools
fi

rm -rf "$RUNTIME_DIR" && mkdir -p "$RUNTIME_DIR"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
for entry in "${sources[@]}"; do
  read -r path sha <<<"$entry"
  curl -fsS --retry 3 -o "$(basename "$path")" "$MIRROR/$path"
  echo "$sha  $(basename "$path")" | sha256sum -c --quiet -
done

prefix="$RUNTIME_DIR/python"
# musl-gcc wraps the host gcc: it sees no /usr/include, so the kernel's headers (linux/, asm/) are given on their
# own, and its -print-multiarch would say x86_64-linux-gnu, which makes CPython's configure see two triplets
# and its setup.py add glibc's /usr/include/x86_64-linux-gnu before musl's headers. A wrapper answers for musl.
mkdir -p kernel-headers bin
ln -s /usr/include/linux /usr/include/asm-generic kernel-headers/
ln -s "/usr/include/$(gcc -print-multiarch)/asm" kernel-headers/asm
cat > bin/musl-cc <<'WRAPPER'
#!/bin/sh
case "$*" in -print-multiarch|--print-multiarch) echo x86_64-linux-musl; exit 0 ;; esac
exec musl-gcc "$@"
WRAPPER
chmod +x bin/musl-cc
export CC="$work/bin/musl-cc"
export CFLAGS="-O2 -fPIC -isystem $work/kernel-headers"
jobs="$(nproc)"
# Builds print to a log, shown when a step fails.
quiet() { "$@" >>"$work/build.log" 2>&1 || { tail -n 60 "$work/build.log" >&2; return 1; }; }

tar xjf zlib_1.2.13.dfsg.orig.tar.bz2
(cd zlib-1.2.13.dfsg && quiet ./configure --static --prefix="$prefix" && quiet make -j"$jobs" && quiet make install)

# libffi: ctypes (psycopg 3.1 imports it to find libpq).
tar xzf libffi_3.4.4.orig.tar.gz
(cd libffi-3.4.4 && quiet ./configure --disable-shared --prefix="$prefix" --libdir="$prefix/lib" && quiet make -j"$jobs" \
   && quiet make install)

tar xzf openssl_3.0.20.orig.tar.gz
(cd openssl-3.0.20 && quiet ./Configure linux-x86_64 no-shared no-tests no-afalgeng no-async \
   --prefix="$prefix" --libdir=lib $CFLAGS && quiet make -j"$jobs" build_libs && quiet make install_dev)

tar xzf python3.11_3.11.2.orig.tar.gz
(cd Python-3.11.2 && quiet ./configure --prefix="$prefix" --without-ensurepip --disable-test-modules --with-openssl="$prefix" \
   CPPFLAGS="-I$prefix/include" LDFLAGS="-L$prefix/lib" PKG_CONFIG_PATH="$prefix/lib/pkgconfig" && quiet make -j"$jobs" && quiet make install)
rm -rf "$prefix/lib/python3.11/test" "$prefix/include" "$prefix/lib/"*.a "$prefix/lib/pkgconfig"

# Each loader directory: musl's ld-musl-x86_64.so.1 (it is libc.so), and the name musllinux wheels link against.
mkdir -p "$RUNTIME_DIR/musl-1.2.3" "$RUNTIME_DIR/musl-1.2.5" trixie
cp "/usr/lib/$(gcc -print-multiarch | sed 's/-gnu$/-musl/')/libc.so" "$RUNTIME_DIR/musl-1.2.3/ld-musl-x86_64.so.1"
dpkg-deb -x musl_1.2.5-3.1~deb13u1_amd64.deb trixie
cp trixie/usr/lib/x86_64-linux-musl/libc.so "$RUNTIME_DIR/musl-1.2.5/ld-musl-x86_64.so.1"
for loader in "$RUNTIME_DIR"/musl-*; do ln -s ld-musl-x86_64.so.1 "$loader/libc.musl-x86_64.so.1"; done

"$RUNTIME_DIR/musl-1.2.5/ld-musl-x86_64.so.1" "$prefix/bin/python3.11" -c "import ssl, zlib, hashlib, ctypes; print('musl runtime:', ssl.OPENSSL_VERSION)"
echo "$BUILD_ID" > "$RUNTIME_DIR/.built"
