#!/usr/bin/env bash
# deploy/: the newest Prometheus (3.x) and Alertmanager (0.27 or later) Debian has, from Debian
# unstable, for .ci/checks.d/deploy-next.sh (the rules, routes and the end-to-end test against
# them, beside Debian 12's 2.42 / 0.25 that the other deploy checks use). Downloaded with apt from
# Debian's archive (signed, verified by apt) and unpacked into target/deploy/next/, never installed:
# the machine's own prometheus / prometheus-alertmanager stay as they are. Both are Go binaries
# needing only libc6 >= 2.34 (Debian 12 has 2.36). Skipped when already unpacked.
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=target/deploy/next
if [ -x "$dir/root/usr/bin/prometheus" ] && [ -x "$dir/root/usr/bin/prometheus-alertmanager" ]; then
  exit 0
fi
rm -rf "$dir"
mkdir -p "$dir/apt/lists/partial" "$dir/apt/cache/archives/partial" "$dir/debs"
dir=$(cd "$dir" && pwd)
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian sid main" \
  >"$dir/apt/sources.list"
# A private apt state: only this list, nothing of the machine's own sources or cache touched.
opts=(-o "Dir::Etc::sourcelist=$dir/apt/sources.list" -o "Dir::Etc::sourceparts=-"
      -o "Dir::State::lists=$dir/apt/lists" -o "Dir::Cache=$dir/apt/cache" -o "APT::Get::List-Cleanup=0"
      -o "APT::Sandbox::User=root")
apt-get "${opts[@]}" -qq update
(cd "$dir/debs" && apt-get "${opts[@]}" -qq download prometheus promtool prometheus-alertmanager)
for deb in "$dir"/debs/*.deb; do
  dpkg-deb -x "$deb" "$dir/root"
done
rm -rf "$dir/apt" "$dir/debs"
"$dir/root/usr/bin/prometheus" --version | head -1
"$dir/root/usr/bin/prometheus-alertmanager" --version | head -1
