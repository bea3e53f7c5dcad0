//! A bundle's revisions and rollout: `Api<Bundle>::revisions`, `rollout_status` and `rollout`
//! (the verbs pause, resume, abort and undo).

use flotilla_api::{Bundle, BundleRevision, Kind, List, RolloutStatus, RolloutUndo};
use reqwest::Method;

use crate::{Api, Result, decode, encode_body, item_path};

/// What `POST /api/v1/bundles/{name}/rollout/{verb}` asks of a bundle's run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RolloutVerb {
    /// Stop starting clusters; those updating carry on (409 unless the run progresses).
    Pause,
    /// Carry on after a pause or a wave's `pauseAfter` (409 unless the run is paused).
    Resume,
    /// Stop the run as its `onFailure` says.
    Abort,
    /// Roll out an earlier revision again (the stable one before the current, or
    /// `toRevision`).
    Undo(RolloutUndo),
}

impl RolloutVerb {
    /// The verb's path segment.
    pub fn as_str(&self) -> &'static str {
        match self {
            RolloutVerb::Pause => "pause",
            RolloutVerb::Resume => "resume",
            RolloutVerb::Abort => "abort",
            RolloutVerb::Undo(_) => "undo",
        }
    }
}

impl Api<Bundle> {
    /// The bundle's revisions, newest first.
    pub async fn revisions(&self, name: &str) -> Result<List<BundleRevision>> {
        let reply = self
            .client
            .send(Method::GET, &revisions_path(name), &[], None)
            .await?;
        decode(&reply, &format!("the revisions of bundle {name:?}"))
    }

    /// The bundle's rollout: its phase, revisions, waves and why it stopped.
    pub async fn rollout_status(&self, name: &str) -> Result<RolloutStatus> {
        let reply = self
            .client
            .send(Method::GET, &rollout_path(name, None), &[], None)
            .await?;
        decode(&reply, &format!("the rollout of bundle {name:?}"))
    }

    /// Pauses, resumes, aborts or undoes the bundle's rollout; the status after it. A verb that
    /// does not apply in the run's phase is refused with 409 (`Error::status`).
    pub async fn rollout(&self, name: &str, verb: &RolloutVerb) -> Result<RolloutStatus> {
        let body = match verb {
            RolloutVerb::Undo(undo) => Some(encode_body(undo)?),
            RolloutVerb::Pause | RolloutVerb::Resume | RolloutVerb::Abort => None,
        };
        let reply = self
            .client
            .send(Method::POST, &rollout_path(name, Some(verb)), &[], body)
            .await?;
        decode(&reply, &format!("the rollout of bundle {name:?}"))
    }
}

fn revisions_path(name: &str) -> String {
    format!("{}/revisions", item_path(Kind::Bundle, name))
}

fn rollout_path(name: &str, verb: Option<&RolloutVerb>) -> String {
    let rollout = format!("{}/rollout", item_path(Kind::Bundle, name));
    match verb {
        Some(verb) => format!("{rollout}/{}", verb.as_str()),
        None => rollout,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use flotilla_api::WaveStatus;
    use reqwest::StatusCode;
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpListener,
    };

    use super::*;
    use crate::AdminClient;

    /// One request as the stub saw it: request line and body.
    type Seen = Arc<Mutex<Vec<(String, String)>>>;

    /// A one-answer-per-connection HTTP server on 127.0.0.1 that answers every request with
    /// `status` and `body`, and records what it was asked.
    async fn stub(status: u16, answer: String) -> (String, Seen) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen = Seen::default();
        let record = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut request = Vec::new();
                let mut buffer = [0u8; 4096];
                // Read the head, then as many body bytes as content-length says.
                let (head, sent) = loop {
                    let read = stream.read(&mut buffer).await.unwrap();
                    request.extend_from_slice(&buffer[..read]);
                    let text = String::from_utf8_lossy(&request).into_owned();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let length = head
                            .lines()
                            .find_map(|line| {
                                let (name, value) = line.split_once(':')?;
                                name.eq_ignore_ascii_case("content-length")
                                    .then(|| value.trim().parse::<usize>().ok())?
                            })
                            .unwrap_or(0);
                        if body.len() >= length || read == 0 {
                            break (head.to_string(), body.to_string());
                        }
                    }
                    assert_ne!(read, 0, "the client closed before its request ended");
                };
                let line = head.lines().next().unwrap_or_default().to_string();
                record.lock().unwrap().push((line, sent));
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                    answer.len(),
                );
                let _ = stream.write_all(reply.as_bytes()).await;
            }
        });
        (base, seen)
    }

    fn status(phase: &str) -> RolloutStatus {
        RolloutStatus {
            phase: phase.into(),
            stable_revision: 3,
            candidate_revision: Some(4),
            waves: vec![WaveStatus {
                name: "canary".into(),
                phase: "Paused".into(),
                clusters: 2,
                ..WaveStatus::default()
            }],
            ..RolloutStatus::default()
        }
    }

    #[test]
    fn a_bundle_name_stays_one_segment_in_rollout_paths() {
        assert_eq!(revisions_path("web"), "/api/v1/bundles/web/revisions");
        assert_eq!(
            rollout_path("a/b c", Some(&RolloutVerb::Resume)),
            "/api/v1/bundles/a%2Fb%20c/rollout/resume"
        );
        assert_eq!(rollout_path("web", None), "/api/v1/bundles/web/rollout");
    }

    #[tokio::test]
    async fn verbs_post_to_their_path_and_only_undo_sends_a_body() {
        let answer = serde_json::to_string(&status("Paused")).unwrap();
        let (base, seen) = stub(200, answer).await;
        let bundles = AdminClient::new(&base, "t").unwrap().api::<Bundle>();
        assert_eq!(
            bundles.rollout("web", &RolloutVerb::Pause).await.unwrap(),
            status("Paused")
        );
        let undo = RolloutVerb::Undo(RolloutUndo {
            to_revision: Some(2),
        });
        bundles.rollout("web", &undo).await.unwrap();
        bundles
            .rollout("web", &RolloutVerb::Undo(RolloutUndo::default()))
            .await
            .unwrap();
        assert_eq!(bundles.rollout_status("w/x").await.unwrap().phase, "Paused");
        let seen = seen.lock().unwrap().clone();
        assert_eq!(
            seen,
            [
                (
                    "POST /api/v1/bundles/web/rollout/pause HTTP/1.1".to_string(),
                    String::new()
                ),
                (
                    "POST /api/v1/bundles/web/rollout/undo HTTP/1.1".into(),
                    r#"{"toRevision":2}"#.into()
                ),
                (
                    "POST /api/v1/bundles/web/rollout/undo HTTP/1.1".into(),
                    "{}".into()
                ),
                (
                    "GET /api/v1/bundles/w%2Fx/rollout HTTP/1.1".into(),
                    String::new()
                ),
            ]
        );
    }

    #[tokio::test]
    async fn revisions_decode_as_a_list_newest_first_as_sent() {
        let list = List {
            items: vec![
                BundleRevision {
                    revision: 2,
                    author: "admin".into(),
                    ..BundleRevision::default()
                },
                BundleRevision {
                    revision: 1,
                    author: "gitrepo/apps".into(),
                    ..BundleRevision::default()
                },
            ],
            continue_token: None,
            total: None,
        };
        let (base, seen) = stub(200, serde_json::to_string(&list).unwrap()).await;
        let bundles = AdminClient::new(&base, "t").unwrap().api::<Bundle>();
        let revisions = bundles.revisions("web").await.unwrap();
        let numbers: Vec<u64> = revisions.items.iter().map(|r| r.revision).collect();
        assert_eq!(numbers, [2, 1]);
        assert_eq!(
            seen.lock().unwrap()[0].0,
            "GET /api/v1/bundles/web/revisions HTTP/1.1"
        );
    }

    #[tokio::test]
    async fn a_verb_the_phase_refuses_is_a_conflict_with_the_servers_message() {
        let body = r#"{"code":409,"reason":"Conflict","message":"bundle \"web\" has no paused rollout to resume"}"#;
        let (base, _) = stub(409, body.into()).await;
        let bundles = AdminClient::new(&base, "t").unwrap().api::<Bundle>();
        let error = bundles
            .rollout("web", &RolloutVerb::Resume)
            .await
            .unwrap_err();
        assert_eq!(error.status(), Some(StatusCode::CONFLICT));
        assert_eq!(
            error.to_string(),
            "bundle \"web\" has no paused rollout to resume (409)"
        );
    }
}
