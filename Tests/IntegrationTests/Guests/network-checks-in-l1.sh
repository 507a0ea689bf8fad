#!/bin/sh
# NetworkInRigTests' checks of sandbox networks, all in one L1 boot (scripts/rig-run --script
# sets RUND, RUND_ROOT and RUND_AGENT). Prints one line per check:
#   CHECK <name> <PASS|FAIL> <details on one line>
# All traffic stays inside L1: L1 serves a page on every address, sandboxes reach it through
# their veth's host end, and L1 fetches from a sandbox through the same link.
# Usage: network-checks-in-l1.sh IMAGE
IMAGE=$1
work=/tmp/network-checks
mkdir -p "$work/www" /run
uptime_now() { cut -d' ' -f1 /proc/uptime; }
oneline() { tr '\n' '|' | tr -c ' -~|' '?' | cut -c1-900; }
report() {
    echo "CHECK $1 $2 $3"
    echo "network-checks: $1 $2" >&2
}
begin() { echo "network-checks: $1 (at $(uptime_now)s)" >&2; }
pass_if() { if [ "$2" = yes ]; then report "$1" PASS "$3"; else report "$1" FAIL "$3"; fi; }
# iproute2 and iptables as rund uses them (busybox's ip applet comes first on L1's PATH).
IP=/usr/sbin/ip IPTABLES=/usr/sbin/iptables
RUN="timeout -k 30 300 $RUND run --stall-timeout 60 --image $IMAGE"
(while sleep 60; do echo "network-checks: still running at $(uptime_now)s" >&2; done) &
ticker=$!

echo "page-from-l1-$$" >"$work/www/page.txt"
busybox httpd -p 8080 -h "$work/www"
# The guest's default gateway is the host end of its veth, where L1 listens too.
# The image has busybox's shell applets only: the rest are called through busybox.
FETCH='bb=busybox; gw=$($bb route -n | $bb awk "\$1 == \"0.0.0.0\" { print \$2 }"); echo "address=$($bb ip -4 -o addr show eth0 | $bb awk "{ print \$4 }")"; echo "gateway=$gw"; echo "link=$($bb ip -o link show eth0 | $bb awk "{ print \$5 }")"; timeout 60 $bb wget -q -O- "http://$gw:8080/page.txt"; echo "fetch=$?"'

begin fetch-from-l1
$RUN --network default -- sh -c "$FETCH; cat /etc/resolv.conf /etc/hosts" >"$work/fetch" 2>"$work/fetch.err"; status=$?
ok=no
[ $status = 0 ] && grep -qx "page-from-l1-$$" "$work/fetch" && grep -qx "fetch=0" "$work/fetch" \
    && grep -q '^address=10\.213\.' "$work/fetch" && grep -q '^link=1500$' "$work/fetch" && grep -q '^gateway=10\.213\.' "$work/fetch" && ok=yes
pass_if fetch-from-l1 $ok "status=$status out=$(oneline <"$work/fetch") err=$(oneline <"$work/fetch.err")"

begin stock-kernel-fetch
$RUN --kernel stock --network default -- sh -c "$FETCH" >"$work/stock" 2>"$work/stock.err"; status=$?
ok=no
[ $status = 0 ] && grep -qx "page-from-l1-$$" "$work/stock" && grep -qx "fetch=0" "$work/stock" && ok=yes
pass_if stock-kernel-fetch $ok "status=$status out=$(oneline <"$work/stock") err=$(oneline <"$work/stock.err")"

# The guest serves; L1 fetches from the guest's address.
begin l1-fetches-from-guest
serve='bb=busybox; $bb mkdir -p /tmp/www; echo "page-from-guest" >/tmp/www/index.html; $bb httpd -p 8000 -h /tmp/www; echo "address=$($bb ip -4 -o addr show eth0 | $bb awk "{ print \$4 }")"; trap "exit 0" TERM; echo serving; sleep 120 & wait'
$RUN --network default -- sh -c "$serve" >"$work/serve" 2>"$work/serve.err" & server=$!
i=0
while [ $i -lt 900 ] && ! grep -qx serving "$work/serve"; do sleep 0.2; i=$((i + 1)); done
address=$(sed -n 's/^address=\(.*\)\/.*/\1/p' "$work/serve" | head -n 1)
got=$(timeout 60 busybox wget -q -O- "http://$address:8000/" 2>"$work/serve.wget"); fetched=$?
kill -TERM $server 2>/dev/null
wait $server; status=$?
ok=no
[ "$got" = "page-from-guest" ] && [ $fetched = 0 ] && [ $status = 0 ] && ok=yes
pass_if l1-fetches-from-guest $ok "address=$address fetched=$fetched got=$got sandbox-status=$status out=$(oneline <"$work/serve") err=$(oneline <"$work/serve.err" ) wget=$(oneline <"$work/serve.wget")"

# Two at once: different addresses, both reach L1.
begin two-at-once
$RUN --network default -- sh -c "$FETCH" >"$work/a" 2>"$work/a.err" & a=$!
$RUN --network default -- sh -c "$FETCH" >"$work/b" 2>"$work/b.err" & b=$!
wait $a; status_a=$?
wait $b; status_b=$?
address_a=$(sed -n 's/^address=//p' "$work/a") address_b=$(sed -n 's/^address=//p' "$work/b")
ok=no
[ $status_a = 0 ] && [ $status_b = 0 ] && [ -n "$address_a" ] && [ -n "$address_b" ] && [ "$address_a" != "$address_b" ] \
    && grep -qx "page-from-l1-$$" "$work/a" && grep -qx "page-from-l1-$$" "$work/b" && ok=yes
pass_if two-at-once $ok "a=[$status_a: $(oneline <"$work/a")] b=[$status_b: $(oneline <"$work/b")] err=$(cat "$work/a.err" "$work/b.err" | oneline)"

# No network: loopback only, the fetch fails cleanly.
begin network-none
$RUN --network none -- sh -c 'busybox ip -o link show | busybox awk "{ print \$2 }" | tr "\n" " "; echo; timeout 30 busybox wget -q -O- http://10.213.0.1:8080/page.txt; echo "fetch=$?"' \
    >"$work/none" 2>"$work/none.err"; status=$?
ok=no
[ $status = 0 ] && [ "$(head -n 1 "$work/none")" = "lo: " ] && grep -q '^fetch=[1-9]' "$work/none" && ok=yes
pass_if network-none $ok "status=$status out=$(oneline <"$work/none") err=$(oneline <"$work/none.err")"

# rund killed: its network stays until `rund gc` takes it back.
begin gc-after-kill
$RUND run --image "$IMAGE" --network default -- sh -c 'echo up; sleep 300' >"$work/killed" 2>&1 & victim=$!
i=0
while [ $i -lt 900 ] && ! grep -qx up "$work/killed"; do sleep 0.2; i=$((i + 1)); done
kill -KILL $victim; wait $victim 2>/dev/null
left_before=$($IP netns list | grep -c '^rund-n')
"$RUND" gc --json >"$work/gc.json" 2>"$work/gc.err"; gc_status=$?
left_after=$($IP netns list | grep -c '^rund-n')
ok=no
[ "$left_before" = 1 ] && [ "$left_after" = 0 ] && [ $gc_status = 0 ] && grep -q '"networks"' "$work/gc.json" && ok=yes
pass_if gc-after-kill $ok "namespaces-before-gc=$left_before after=$left_after gc-status=$gc_status gc=$(oneline <"$work/gc.json") err=$(oneline <"$work/gc.err")"

# Nothing of any sandbox's network is left: namespaces, links, rules, leases.
begin no-leftovers
sleep 1
namespaces=$($IP netns list | grep -c '^rund-n')
links=$($IP -o link show | grep -c ': rund[0-9]*h')
rules=$($IPTABLES -w -t nat -S POSTROUTING | grep -c 'rund-n')
leases=$(ls "$RUND_ROOT/network/leases" 2>/dev/null | wc -l)
ok=no
[ "$namespaces" = 0 ] && [ "$links" = 0 ] && [ "$rules" = 0 ] && [ "$leases" = 0 ] && ok=yes
pass_if no-leftovers $ok "namespaces=$namespaces links=$links rules=$rules leases=$leases"

kill $ticker 2>/dev/null
exit 0
