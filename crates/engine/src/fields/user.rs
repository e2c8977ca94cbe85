//! `user.*` and `group.*`: who the process runs as (Falco's `sinsp_filtercheck_user` and
//! `sinsp_filtercheck_group`). Names come from the host through `env::UserResolver`.

use super::{FieldDef, FieldType as T, Val, why};

pub(super) const FIELDS: &[FieldDef] = &[
    FieldDef::new("user.uid", T::Uint32, "Effective user id.", |c, _| {
        Some(Val::Num(i64::from(c.en.event.euid)))
    }),
    FieldDef::new(
        "user.name",
        T::Charbuf,
        "Name of the effective user (from the user database).",
        |c, _| {
            c.cache
                .user_name
                .get_or_init(|| c.svc.users.user_name(c.en.event.euid))
                .as_deref()
                .and_then(Val::str)
        },
    ),
    FieldDef::new(
        "user.loginuid",
        T::Int64,
        "Audit login uid, -1 when unset.",
        |c, _| {
            c.process().map(|p| {
                Val::Num(if p.loginuid == u32::MAX {
                    -1
                } else {
                    i64::from(p.loginuid)
                })
            })
        },
    ),
    FieldDef::new(
        "user.loginname",
        T::Charbuf,
        "Name of the audit login user.",
        |c, _| {
            c.process()
                .filter(|p| p.loginuid != u32::MAX)
                .and_then(|p| c.svc.users.user_name(p.loginuid))
                .and_then(|n| Val::owned(n.to_string()))
        },
    ),
    FieldDef::unset(
        "user.homedir",
        T::Charbuf,
        "Home directory of the user.",
        why::NOT_CAPTURED,
    ),
    FieldDef::unset(
        "user.shell",
        T::Charbuf,
        "Login shell of the user.",
        why::NOT_CAPTURED,
    ),
    FieldDef::new("group.gid", T::Uint32, "Effective group id.", |c, _| {
        Some(Val::Num(i64::from(c.en.event.egid)))
    }),
    FieldDef::new(
        "group.name",
        T::Charbuf,
        "Name of the effective group.",
        |c, _| {
            c.svc
                .users
                .group_name(c.en.event.egid)
                .and_then(|n| Val::owned(n.to_string()))
        },
    ),
];
