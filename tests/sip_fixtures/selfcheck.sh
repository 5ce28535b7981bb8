#!/usr/bin/env bash
# Check every scenario here against SIPp itself (no sipguard): each UAC runs
# against the UAS it is meant to meet, over loopback, on free ports.
#   tests/sip_fixtures/selfcheck.sh            # all pairs
#   SIPP=/path/to/sipp tests/sip_fixtures/selfcheck.sh
# Prints one line per pair and exits 1 if any pair failed. Logs stay in $WORK.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
SIPP="${SIPP:-sipp}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/sipguard-selfcheck.XXXXXX")"
failures=0

free_port() {
    python3 -c 'import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# run_pair NAME UAC.xml UAS.xml EXPECTED_UAC_RC "UAC OPTIONS" "UAS OPTIONS"
run_pair() {
    local name="$1" uac="$2" uas="$3" expected="$4" uac_opts="$5" uas_opts="$6"
    local uas_port uac_port uas_pid rc
    uas_port="$(free_port)"
    uac_port="$(free_port)"
    # shellcheck disable=SC2086
    "$SIPP" -sf "$uas" -i 127.0.0.1 -p "$uas_port" -ci 127.0.0.1 -cp "$(free_port)" \
        -mp "$(free_port)" -nostdin -timeout 120 -trace_err -error_file "$WORK/$name.uas.err" \
        -trace_msg -message_file "$WORK/$name.uas.msg" $uas_opts \
        >"$WORK/$name.uas.out" 2>&1 </dev/null &
    uas_pid=$!
    sleep 0.3
    # shellcheck disable=SC2086
    "$SIPP" -sf "$uac" -i 127.0.0.1 -p "$uac_port" "127.0.0.1:$uas_port" \
        -ci 127.0.0.1 -cp "$(free_port)" -mp "$(free_port)" -nostdin -timeout 60 -timeout_error \
        -trace_err -error_file "$WORK/$name.uac.err" -trace_msg -message_file "$WORK/$name.uac.msg" \
        $uac_opts >"$WORK/$name.uac.out" 2>&1 </dev/null
    rc=$?
    kill "$uas_pid" 2>/dev/null
    wait "$uas_pid" 2>/dev/null
    if [ "$rc" -eq "$expected" ]; then
        echo "ok    $name (sipp exit $rc)"
    else
        echo "FAIL  $name (sipp exit $rc, expected $expected; logs in $WORK/$name.*)"
        failures=$((failures + 1))
    fi
}

# A UAS answering 408, to exercise the 408 branch of uac_timeout.xml.
sed -e 's/uas_busy/uas_timeout_408/' -e 's/486 Busy Here/408 Request Timeout/' \
    "$here/uas_busy.xml" >"$WORK/uas_408.xml"

F="$here"
run_pair call_bye        "$F/uac_call_bye.xml"      "$F/uas_answer.xml"      0 "-s 15551234567 -m 5 -r 10 -d 200" ""
run_pair midcall         "$F/uac_call_midcall.xml"  "$F/uas_answer_midcall.xml" 0 "-s 15551234567 -m 3 -r 10 -d 100" ""
run_pair no_ack          "$F/uac_call_no_ack.xml"   "$F/uas_answer.xml"      0 "-s 15551234567 -m 2 -r 10 -d 200" ""
run_pair prack           "$F/uac_call_prack.xml"    "$F/uas_answer_prack.xml" 0 "-s 15551234567 -m 3 -r 10 -d 200" ""
run_pair call_wait_bye   "$F/uac_call_wait_bye.xml" "$F/uas_answer_bye.xml"  0 "-s 15551234567 -m 3 -r 10" "-d 200"
run_pair callee_reinvite "$F/uac_call_callee_reinvite.xml" "$F/uas_answer_reinvite_bye.xml" 0 "-s 15551234567 -m 3 -r 10" "-d 200"
run_pair blocked         "$F/uac_blocked.xml"       "$F/uas_forbidden.xml"   0 "-s 19005551234 -m 2 -r 10" ""
run_pair cancel          "$F/uac_cancel.xml"        "$F/uas_ring_cancel.xml" 0 "-s 15551234567 -m 3 -r 10 -d 200" ""
run_pair cancel_early    "$F/uac_cancel_early.xml"  "$F/uas_trying_cancel.xml" 0 "-s 15551234567 -m 3 -r 10 -d 200" ""
run_pair busy            "$F/uac_busy.xml"          "$F/uas_busy.xml"        0 "-s 15551234567 -m 2 -r 10" ""
run_pair unavailable     "$F/uac_unavailable.xml"   "$F/uas_unavailable.xml" 0 "-s 15551234567 -m 2 -r 10" ""
run_pair timeout_408     "$F/uac_timeout.xml"       "$WORK/uas_408.xml"      0 "-s 15551234567 -m 1" ""
run_pair timeout_503     "$F/uac_timeout.xml"       "$F/uas_unavailable.xml" 0 "-s 15551234567 -m 1" ""
# Nothing answers: the UAC must fail when its own -timeout runs out (with
# -timeout_error SIPp exits 255 then).
run_pair silent          "$F/uac_timeout.xml"       "$F/uas_silent.xml"      255 "-s 15551234567 -m 1 -timeout 3" ""
run_pair options         "$F/uac_options.xml"       "$F/uas_answer.xml"      0 "-s ping -m 2 -r 10" "-aa"
# 10% loss on the UAC side: retransmissions must still complete every call.
run_pair lossy_call_bye  "$F/uac_call_bye.xml"      "$F/uas_answer.xml"      0 "-s 15551234567 -m 50 -r 20 -d 200 -lost 10" ""
run_pair lossy_wait_bye  "$F/uac_call_wait_bye.xml" "$F/uas_answer_bye.xml"  0 "-s 15551234567 -m 20 -r 20 -lost 10" "-d 200"

if [ "$failures" -ne 0 ]; then
    echo "$failures pair(s) failed; logs in $WORK"
    exit 1
fi
rm -rf "$WORK"
