#!/usr/bin/env bash
# Fetch MathJax 3 by package name from the npm registry, check it against a pinned sha256 and
# keep the parts the book serves itself: the tex-mml-chtml bundle, its CommonHTML fonts, the
# TeX extensions it loads on demand (without them one \boldsymbol stops all math on a page),
# and the menu and accessibility components it may request.
set -euo pipefail
VERSION=3.2.2
SHA256=1b9c0a1c44df864e915690558e72adb9cc5203360daefd385084ced3b6c64c09
dest=${1:?usage: fetch_mathjax.sh DEST}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "mathjax@$VERSION" >/dev/null)
tarball="$work/mathjax-$VERSION.tgz"
echo "$SHA256  $tarball" | sha256sum --check --quiet
tar -xzf "$tarball" -C "$work"
rm -rf "$dest"
mkdir -p "$dest/es5"
src="$work/package/es5"
cp "$src/tex-mml-chtml.js" "$dest/es5/"
for part in input/tex/extensions input/mml output/chtml/fonts/woff-v2 ui a11y adaptors; do
  mkdir -p "$dest/es5/$part"
  cp -R "$src/$part/." "$dest/es5/$part/"
done
cp "$work/package/LICENSE" "$dest/"
echo "MathJax $VERSION (sha256 verified) in $dest"
