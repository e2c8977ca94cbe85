#!/bin/busybox sh
# /init of the kernel matrix's guest (cargo xtask kernels). Mounts what a node has, starts the
# real agent with the default rules and a kill profile, runs real actions, and reports on the
# serial console between `@@` markers that xtask/src/kernels/guest.rs parses. Ends by powering
# off; the host enforces a timeout.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/shm /tmp /sys/fs/cgroup /run
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /tmp
mount -t tracefs nodev /sys/kernel/tracing
mount -t bpf bpf /sys/fs/bpf
mount -t cgroup2 cgroup2 /sys/fs/cgroup
ip link set lo up
# Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK (64 KiB by default here too): the agent
# raises it itself, so it is left alone to prove that.
[ -f /etc/osprey/env ] && . /etc/osprey/env

echo "@@uname $(uname -r)"
echo "@@cmdline $(cat /proc/cmdline)"
echo "@@begin kernel"
/osprey kernel 2>&1
echo "@@end kernel"

/osprey run --json --rules /etc/osprey/osprey_rules.yaml --rules /etc/osprey/matrix.yaml \
    --metrics 127.0.0.1:9090 >/tmp/alerts.jsonl 2>/tmp/agent.log &
AGENT=$!
i=0
while ! grep -q "osprey is running" /tmp/agent.log 2>/dev/null; do
    if ! kill -0 $AGENT 2>/dev/null || [ $i -ge 600 ]; then
        echo "@@agent-failed"
        echo "@@begin agent"
        cat /tmp/agent.log
        echo "@@end agent"
        AGENT=
        break
    fi
    i=$((i + 1))
    sleep 0.2
done
echo "@@agent-ready $((i / 5))s"

if [ -n "$AGENT" ]; then
    # Give the agent's first read of the ring buffer a moment.
    sleep 1
    act() {
        name=$1
        shift
        "$@" >/tmp/act.out 2>&1
        echo "@@action $name status=$? $(tr '\n' ' ' </tmp/act.out)"
    }
    echo 'root:*:19000:0:99999:7:::' >/etc/shadow
    act sensitive_read cat /etc/shadow
    act ptrace /actions ptrace
    act memfd_exec /actions memfd /bin/busybox true
    act user_namespace /actions userns
    act module_load /actions init_module
    act setuid_bit sh -c 'touch /tmp/suid && chmod u+s /tmp/suid'
    # busybox picks its applet by the name it runs under: /dev/shm/true is `true`.
    act dev_shm_exec sh -c 'cp /bin/busybox /dev/shm/true && /dev/shm/true'
    act profile_kill /actions acct
    # A program handed connections as stdin and stdout with no dup2: the kernel's fd table at exec.
    act network_stdio /actions netstdio /bin/busybox
    # A root program started with LD_PRELOAD among 300 entries (9 KB): the kernel reads the
    # environment in three 4 KiB reads where it has bpf_loop, an entry at a time elsewhere.
    act ld_preload sh -c 'i=0; while [ $i -lt 300 ]; do export "SVC${i}_SERVICE_HOST=10.96.1.$i"; i=$((i + 1)); done; LD_PRELOAD=/tmp/matrix.so /bin/busybox true'
    # /etc/shadow opened through an io_uring ring: no openat syscall at all.
    act io_uring_read /uring open /etc/shadow
    # An x86_64 program's `int $0x80` open (killed where the kernel has no 32-bit entry).
    act ia32_from_64 /int80 open /proc/version
    # Alerts are judged within milliseconds; a few seconds cover a slow emulated CPU.
    sleep 3
    echo "@@begin metrics"
    wget -q -O - http://127.0.0.1:9090/metrics | grep -E '^osprey_(events_total|kernel_dropped_total|decode)'
    echo "@@end metrics"
    kill -INT $AGENT
    wait $AGENT
    echo "@@agent-exit $?"
    echo "@@begin alerts"
    cat /tmp/alerts.jsonl
    echo "@@end alerts"
    echo "@@begin agent"
    cat /tmp/agent.log
    echo "@@end agent"
fi

echo "@@begin dmesg"
dmesg
echo "@@end dmesg"
echo "@@tainted $(cat /proc/sys/kernel/tainted)"
echo "@@done"
poweroff -f
