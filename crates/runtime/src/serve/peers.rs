//! The whole cluster on every process's page and API. Each process's board holds the
//! series it writes; a request for the status page or `/api/v1/indicators` fetches the
//! other processes' shares (`/api/v1/board`, which answers with the process's own points
//! only, so nothing fans out further, in bincode) side by side, each within [`PEER_DEADLINE`], and
//! shows them together, naming each process that did not answer.

use std::time::Duration;

use paceline_model::point::Point;

use super::http::ClusterView;
use crate::board::Board;

/// How long a page waits for another process's share: a process that does not answer
/// within it is named on the page, which is not held up.
pub const PEER_DEADLINE: Duration = Duration::from_secs(2);

/// The share's media type: bincode, lossless (a verdict point's unset value is NaN, which
/// JSON cannot carry).
pub const SHARE_TYPE: &str = "application/x-paceline-board";

/// The largest share read from a peer: a board holds a bounded chart per planned series
/// and one point per series, a few MB at most.
const SHARE_MAX_BYTES: u64 = 64 << 20;

fn share_codec() -> impl bincode::Options {
    use bincode::Options;
    bincode::options().with_limit(SHARE_MAX_BYTES)
}

/// A process's share as `/api/v1/board` answers it.
pub fn encode_share(points: &[Point]) -> Result<Vec<u8>, bincode::Error> {
    use bincode::Options;
    share_codec().serialize(points)
}

/// A share as `/api/v1/board` answered it; bounded in size.
pub fn decode_share(bytes: &[u8]) -> Result<Vec<Point>, bincode::Error> {
    use bincode::Options;
    share_codec().deserialize(bytes)
}

/// A process whose share is missing from a page, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unanswered {
    /// Its index.
    pub process: usize,
    /// Its HTTP address.
    pub address: String,
    /// What went wrong (no answer within the deadline, refused, an error status).
    pub reason: String,
}

/// Every process's share of the board, as far as they answered.
pub struct Gathered {
    /// This process's board with the others' points.
    pub board: Board,
    /// The processes that did not answer.
    pub unanswered: Vec<Unanswered>,
}

/// This process's board with every other process's share, fetched side by side.
pub async fn gather(view: &ClusterView, own: &Board) -> Gathered {
    let mut asks = tokio::task::JoinSet::new();
    for process in (0..view.placement.processes).filter(|i| *i != view.placement.process) {
        let address = view.http.get(process).cloned().unwrap_or_default();
        let client = view.client.clone();
        let token = view.token.as_ref().map(|t| t.expose().to_string());
        asks.spawn(async move {
            let answer = fetch_share(&client, &address, token.as_deref()).await;
            (process, address, answer)
        });
    }
    let mut shares = Vec::new();
    let mut unanswered = Vec::new();
    while let Some(joined) = asks.join_next().await {
        let Ok((process, address, answer)) = joined else {
            continue;
        };
        match answer {
            Ok(points) => shares.push(points),
            Err(reason) => unanswered.push(Unanswered {
                process,
                address,
                reason,
            }),
        }
    }
    unanswered.sort_by_key(|u| u.process);
    Gathered {
        board: own.merged_with(&shares),
        unanswered,
    }
}

/// One process's points, or why not, within [`PEER_DEADLINE`].
async fn fetch_share(
    client: &reqwest::Client,
    address: &str,
    token: Option<&str>,
) -> Result<Vec<Point>, String> {
    let url = format!("http://{address}/api/v1/board");
    let ask = async {
        let mut request = client.get(&url);
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        let answer = request
            .send()
            .await
            .map_err(|e| paceline_sink::influx::error_chain(&e))?;
        let status = answer.status();
        if !status.is_success() {
            return Err(format!("answered {status}"));
        }
        if answer.content_length().is_some_and(|n| n > SHARE_MAX_BYTES) {
            return Err("an answer larger than a board can be".into());
        }
        let body = answer
            .bytes()
            .await
            .map_err(|e| paceline_sink::influx::error_chain(&e))?;
        decode_share(&body).map_err(|e| format!("an answer not understood: {e}"))
    };
    match tokio::time::timeout(PEER_DEADLINE, ask).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {} s", PEER_DEADLINE.as_secs())),
    }
}
