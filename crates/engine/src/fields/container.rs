//! `container.*` and `k8s.*`: where the process runs (Falco's container plugin and
//! `sinsp_filtercheck_k8s`). The container comes with the event or from
//! `env::ContainerLookup`, once per event.

use osprey_model::ContainerInfo;

use super::{ArgSpec, Ctx, FieldArg, FieldDef, FieldType as T, Val, why};

pub(super) const FIELDS: &[FieldDef] = &[
    FieldDef::new(
        "container.id",
        T::Charbuf,
        "Container id (12 characters) from the process's cgroup, or host.",
        |c, _| c.container().and_then(|c| Val::str(&c.id)),
    ),
    FieldDef::new(
        "container.full_id",
        T::Charbuf,
        "The whole container id (64 characters), or host.",
        |c, _| {
            c.container().and_then(|c| {
                Val::owned(if c.full_id.is_empty() {
                    c.id.clone()
                } else {
                    c.full_id.clone()
                })
            })
        },
    ),
    FieldDef::new(
        "container.name",
        T::Charbuf,
        "Container name (the Kubernetes container name in a pod); host outside containers.",
        |c, _| text(c, |c| &c.name),
    ),
    FieldDef::new(
        "container.image",
        T::Charbuf,
        "Container image, as repository:tag.",
        |c, _| text(c, |c| &c.image),
    ),
    FieldDef::new(
        "container.image.repository",
        T::Charbuf,
        "Container image repository.",
        |c, _| text(c, |c| &c.image_repository),
    ),
    FieldDef::new(
        "container.image.tag",
        T::Charbuf,
        "Container image tag.",
        |c, _| text(c, |c| &c.image_tag),
    ),
    FieldDef::new(
        "container.image.digest",
        T::Charbuf,
        "Container image digest.",
        |c, _| text(c, |c| &c.image_digest),
    ),
    FieldDef::new(
        "container.type",
        T::Charbuf,
        "Container runtime: podman, containerd, cri-o, docker; host outside containers.",
        |c, _| text(c, |c| &c.runtime),
    ),
    FieldDef::new(
        "container.privileged",
        T::Bool,
        "The container is privileged (runtime's flag, or all capabilities without seccomp \
         and masked paths in its OCI spec).",
        |c, _| c.container().and_then(|c| c.privileged).map(Val::Bool),
    ),
    FieldDef::new(
        "container.start_ts",
        T::Abstime,
        "Container start time.",
        |c, _| c.container().and_then(|c| c.start_ts).map(Val::Time),
    ),
    FieldDef::unset(
        "container.image.id",
        T::Charbuf,
        "Container image id.",
        why::CONTAINER,
    ),
    FieldDef::unset(
        "container.mounts",
        T::Charbuf,
        "Container mounts.",
        why::CONTAINER,
    ),
    // Falco's per-mount fields, by index or by source glob (container.mount.dest[/proc*]).
    // Mounts are not read from the runtime yet, so every lookup answers what Falco answers for
    // a mount that does not exist, "N/A": rules that test for a mount (falco-sandbox's
    // sensitive_mount) stay quiet rather than fire for every container.
    FieldDef::new(
        "container.mount",
        T::Charbuf,
        "A mount (container.mount[N] or [SOURCE-GLOB]): source:dest:mode:rdwr:propagation. \
         Mounts are not read from the runtime yet: always N/A, Falco's value for no such mount.",
        |_, _| Val::str("N/A"),
    )
    .with_arg(ArgSpec::Key),
    FieldDef::new(
        "container.mount.source",
        T::Charbuf,
        "Source of a mount (by index or destination glob); always N/A for now.",
        |_, _| Val::str("N/A"),
    )
    .with_arg(ArgSpec::Key),
    FieldDef::new(
        "container.mount.dest",
        T::Charbuf,
        "Destination of a mount (by index or source glob); always N/A for now.",
        |_, _| Val::str("N/A"),
    )
    .with_arg(ArgSpec::Key),
    FieldDef::new(
        "container.mount.mode",
        T::Charbuf,
        "Mode of a mount (by index or source glob); always N/A for now.",
        |_, _| Val::str("N/A"),
    )
    .with_arg(ArgSpec::Key),
    FieldDef::new(
        "container.mount.rdwr",
        T::Charbuf,
        "Whether a mount is read-write (by index or source glob); always N/A for now.",
        |_, _| Val::str("N/A"),
    )
    .with_arg(ArgSpec::Key),
    FieldDef::new(
        "container.mount.propagation",
        T::Charbuf,
        "Propagation of a mount (by index or source glob); always N/A for now.",
        |_, _| Val::str("N/A"),
    )
    .with_arg(ArgSpec::Key),
    FieldDef::unset(
        "container.label",
        T::Charbuf,
        "Container label (container.label[KEY]).",
        why::CONTAINER,
    )
    .with_arg(ArgSpec::Key),
    FieldDef::unset(
        "container.healthcheck",
        T::Charbuf,
        "Container health check command.",
        why::CONTAINER,
    ),
    FieldDef::new(
        "k8s.ns.name",
        T::Charbuf,
        "Kubernetes namespace of the pod.",
        |c, _| text(c, |c| &c.k8s_ns_name),
    ),
    FieldDef::new(
        "k8s.pod.name",
        T::Charbuf,
        "Kubernetes pod name.",
        |c, _| text(c, |c| &c.k8s_pod_name),
    ),
    FieldDef::new("k8s.pod.uid", T::Charbuf, "Kubernetes pod uid.", |c, _| {
        text(c, |c| &c.k8s_pod_uid)
    }),
    FieldDef::new(
        "k8s.pod.label",
        T::Charbuf,
        "Kubernetes pod label (k8s.pod.label[KEY]).",
        |c, a| match a {
            FieldArg::Key(k) => c
                .container()
                .and_then(|c| c.k8s_pod_labels.get(&**k))
                .and_then(|v| Val::str(v)),
            _ => None,
        },
    )
    .with_arg(ArgSpec::Key),
    FieldDef::new(
        "k8s.pod.labels",
        T::Charbuf,
        "Kubernetes pod labels as key:value pairs joined by commas, in key order.",
        |c, _| {
            c.container()
                .and_then(ContainerInfo::pod_labels_text)
                .and_then(Val::owned)
        },
    ),
    FieldDef::unset(
        "k8s.pod.ip",
        T::Ipaddr,
        "Kubernetes pod IP.",
        why::CONTAINER,
    ),
    FieldDef::unset(
        "k8s.pod.cni.json",
        T::Charbuf,
        "Kubernetes pod CNI result.",
        why::CONTAINER,
    ),
];

/// An optional text attribute of the container, borrowed: the container lives as long as the
/// event or its cache.
fn text<'a>(c: &Ctx<'a>, get: fn(&ContainerInfo) -> &Option<String>) -> Option<Val<'a>> {
    c.container()
        .and_then(|c| get(c).as_deref())
        .and_then(Val::str)
}
