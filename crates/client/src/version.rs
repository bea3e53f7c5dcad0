//! The server's build (`GET /api/v1/version`), for `flotilla version`.

use flotilla_api::ServerVersion;
use reqwest::Method;

use crate::{AdminClient, Result, decode};

impl AdminClient {
    /// The release, commit and store kind of the server this client talks to.
    pub async fn server_version(&self) -> Result<ServerVersion> {
        let reply = self.send(Method::GET, "/api/v1/version", &[], None).await?;
        decode(&reply, "the server's version")
    }
}
