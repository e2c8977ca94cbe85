//! containerd's own API, for what its task bundle does not say: the image a container was
//! created from (a bundle's `config.json` has no image reference; only containerd 1.7's CRI
//! plugin copies it into an annotation) and the container's labels, which the CRI plugin sets
//! from the kubelet's (`io.kubernetes.pod.name`, ...).
//!
//! The container table asks from the pipeline's thread and must never block it, so questions
//! go to one background thread that owns the gRPC channel (containerd's unix socket) and
//! answers land in a shared map the table reads on its next retry. A question that cannot be
//! answered (no socket, containerd down, unknown id) is answered `Missing` within a timeout,
//! so the table's bounded wait for metadata is never spent on it.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    path::PathBuf,
    sync::{Arc, Mutex, mpsc},
    time::Duration,
};

mod pb {
    tonic::include_proto!("containerd.services.containers.v1");
}

/// What containerd said about one container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    Found {
        image: String,
        labels: BTreeMap<String, String>,
    },
    /// No such container, or containerd did not answer in time.
    Missing,
}

/// A client of containerd's containers service on a background thread.
pub struct ContainerdApi {
    questions: mpsc::Sender<(String, String)>,
    answers: Arc<Mutex<HashMap<String, Answer>>>,
    /// Ids asked about and not forgotten: each is asked once.
    asked: Mutex<HashSet<String>>,
}

/// How long one question may take before it is answered `Missing`.
const TIMEOUT: Duration = Duration::from_millis(200);

impl ContainerdApi {
    /// Starts the thread; it connects to `socket` when the first question comes (and again
    /// after an error), so containerd may start after the agent.
    pub fn start(socket: PathBuf) -> std::io::Result<Self> {
        let (questions, rx) = mpsc::channel::<(String, String)>();
        let answers: Arc<Mutex<HashMap<String, Answer>>> = Arc::default();
        let out = answers.clone();
        std::thread::Builder::new()
            .name("containerd-api".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::warn!("containerd API client: no runtime: {e}");
                        return;
                    }
                };
                let mut client = None;
                for (namespace, id) in rx {
                    let answer = rt.block_on(ask(&socket, &mut client, &namespace, &id));
                    if let Ok(mut map) = out.lock() {
                        map.insert(id, answer);
                    }
                }
            })?;
        Ok(Self {
            questions,
            answers,
            asked: Mutex::default(),
        })
    }

    /// Asks about container `id` of containerd namespace `namespace` (`k8s.io`, `default`),
    /// unless it was asked already.
    pub fn ask(&self, namespace: &str, id: &str) {
        let Ok(mut asked) = self.asked.lock() else {
            return;
        };
        if asked.insert(id.to_string()) {
            let _ = self.questions.send((namespace.to_string(), id.to_string()));
        }
    }

    pub fn was_asked(&self, id: &str) -> bool {
        self.asked.lock().is_ok_and(|a| a.contains(id))
    }

    /// The answer about `id`, once there is one.
    pub fn answer(&self, id: &str) -> Option<Answer> {
        self.answers.lock().ok()?.get(id).cloned()
    }

    /// Forgets the answer about a container that is gone.
    pub fn forget(&self, id: &str) {
        if let Ok(mut map) = self.answers.lock() {
            map.remove(id);
        }
        if let Ok(mut asked) = self.asked.lock() {
            asked.remove(id);
        }
    }
}

type Client = pb::containers_client::ContainersClient<tonic::transport::Channel>;

async fn connect(socket: &std::path::Path) -> Result<Client, tonic::transport::Error> {
    let socket = socket.to_path_buf();
    // The URI is required by the API but unused: every connection goes to the socket.
    let channel = tonic::transport::Endpoint::from_static("http://containerd.sock")
        .connect_timeout(TIMEOUT)
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let socket = socket.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(socket).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        }))
        .await?;
    Ok(pb::containers_client::ContainersClient::new(channel))
}

async fn ask(
    socket: &std::path::Path,
    client: &mut Option<Client>,
    namespace: &str,
    id: &str,
) -> Answer {
    if client.is_none() {
        match tokio::time::timeout(TIMEOUT, connect(socket)).await {
            Ok(Ok(c)) => *client = Some(c),
            Ok(Err(e)) => {
                tracing::debug!(socket = %socket.display(), "containerd API: {e}");
                return Answer::Missing;
            }
            Err(_) => return Answer::Missing,
        }
    }
    let Some(c) = client.as_mut() else {
        return Answer::Missing;
    };
    let mut req = tonic::Request::new(pb::GetContainerRequest { id: id.to_string() });
    req.set_timeout(TIMEOUT);
    if let Ok(ns) = namespace.parse() {
        req.metadata_mut().insert("containerd-namespace", ns);
    }
    match tokio::time::timeout(TIMEOUT, c.get(req)).await {
        Ok(Ok(resp)) => match resp.into_inner().container {
            Some(ct) => Answer::Found {
                image: ct.image,
                labels: ct.labels.into_iter().collect(),
            },
            None => Answer::Missing,
        },
        Ok(Err(status)) => {
            if status.code() != tonic::Code::NotFound {
                tracing::debug!(%id, "containerd API: {status}");
                // The channel may be broken (containerd restarted): reconnect next time.
                *client = None;
            }
            Answer::Missing
        }
        Err(_) => {
            *client = None;
            Answer::Missing
        }
    }
}
