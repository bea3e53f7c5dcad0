//! `GET /api/v1/{plural}`: list pages of every kind, keyset-paginated (`limit`, `continue`),
//! filtered by label selector and state, bounded in items and bytes. Rendering only: every
//! page is read from memory under the read lock.

use std::ops::Bound;

use axum::{
    Json,
    extract::State,
    http::HeaderMap,
    response::{IntoResponse, Response},
};
use base64::Engine;
use flotilla_api::{ClusterState, Kind, List};
use flotilla_core::selector::Selector;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{
    Path, Query,
    admin::{kind_of, require_admin},
};
use crate::{
    error::{ApiError, ApiResult},
    state::{SharedState, now_seconds},
    view,
};

/// Most items one list page returns; keeps a page's latency and size bounded at any fleet size.
const MAX_PAGE: usize = 5_000;
const DEFAULT_PAGE: usize = 500;

/// The list filters and keyset pagination of `GET /api/v1/{plural}` (the OpenAPI document's
/// parameters are derived from this).
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Kubernetes label selector, e.g. `env=prod,tier in (a,b),!canary`
    label_selector: Option<String>,
    /// Clusters: Online, Offline or Pending. Bundles: Ready, NotReady, Modified, Error, Pending
    /// or Paused. Tokens: Active, Expired or UsedUp.
    state: Option<String>,
    /// `name` (the default) or `-name`.
    #[param(pattern = "^-?name$")]
    sort: Option<String>,
    /// Items per page.
    #[param(minimum = 1, maximum = 5000, default = 500)]
    limit: Option<usize>,
    /// Keyset cursor from the previous page's `continue`
    #[serde(rename = "continue")]
    continue_token: Option<String>,
    /// Stream changes instead of returning a page: newline-delimited JSON watch events
    /// (`{"type":"ADDED"|"MODIFIED"|"DELETED"|"BOOKMARK"|"ERROR","object":…}`), the current
    /// objects first as ADDED. Honours `labelSelector` and `fieldSelector`; `state`, `sort`,
    /// `limit` and `continue` do not apply.
    watch: Option<bool>,
    /// With `watch`: empty or `0` (start from the current objects); any other value is answered
    /// 410 Gone, as lists carry no version to resume from.
    resource_version: Option<String>,
    /// With `watch`: `metadata.name=NAME` watches one object.
    field_selector: Option<String>,
}

fn encode_cursor(name: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(name)
}

fn decode_cursor(cursor: &str) -> ApiResult<String> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| {
            ApiError::BadRequest(
                "invalid continue token; pass back the value of `continue` from the previous page"
                    .into(),
            )
        })
}

/// The key range after a page cursor, so a page deep in a large list starts there instead of
/// walking every name before it.
fn after_cursor(after: Option<&str>, descending: bool) -> (Bound<&str>, Bound<&str>) {
    match (after, descending) {
        (None, _) => (Bound::Unbounded, Bound::Unbounded),
        (Some(after), false) => (Bound::Excluded(after), Bound::Unbounded),
        (Some(after), true) => (Bound::Unbounded, Bound::Excluded(after)),
    }
}

/// Most bytes of items one list page holds: a page stops early, with a `continue` token, once
/// its items reach this size, so no page is ever the whole fleet's worth of JSON whatever its
/// objects hold (one page once came to 145 MiB). 4 MiB is some forty default pages of typical
/// clusters, and a client parses it in well under a second.
pub const MAX_PAGE_BYTES: usize = 4 << 20;

/// One page of `names` (already past the cursor, see `after_cursor`), in order or reversed:
/// the items `keep` accepts, rendered as JSON, until `limit` items or `MAX_PAGE_BYTES` bytes
/// (at least one item, so a page always makes progress).
fn page<'a, T>(
    names: impl DoubleEndedIterator<Item = (&'a str, T)>,
    descending: bool,
    limit: usize,
    mut keep: impl FnMut(&str, &T) -> bool,
    render: impl FnMut(T) -> Option<Box<RawValue>>,
) -> (Vec<Box<RawValue>>, Option<String>) {
    page_within(names, descending, limit, MAX_PAGE_BYTES, &mut keep, render)
}

/// `page` with the byte budget given (tests use a small one).
fn page_within<'a, T>(
    names: impl DoubleEndedIterator<Item = (&'a str, T)>,
    descending: bool,
    limit: usize,
    budget: usize,
    mut keep: impl FnMut(&str, &T) -> bool,
    mut render: impl FnMut(T) -> Option<Box<RawValue>>,
) -> (Vec<Box<RawValue>>, Option<String>) {
    let iter: Box<dyn Iterator<Item = (&str, T)>> = if descending {
        Box::new(names.rev())
    } else {
        Box::new(names)
    };
    let mut items = Vec::new();
    let mut bytes = 0;
    let mut last = None;
    for (name, item) in iter {
        if !keep(name, &item) {
            continue;
        }
        // Another item matches: if this page is full, it starts the next one.
        if items.len() == limit || bytes >= budget {
            return (items, last.map(|n: &str| encode_cursor(n)));
        }
        let Some(rendered) = render(item) else {
            continue;
        };
        bytes += rendered.get().len();
        last = Some(name);
        items.push(rendered);
    }
    (items, None)
}

/// An item of a list page as JSON (rendering our own documents does not fail).
fn raw<T: serde::Serialize>(item: &T) -> Option<Box<RawValue>> {
    serde_json::value::to_raw_value(item).ok()
}

fn parse_sort(sort: Option<&str>) -> ApiResult<bool> {
    match sort.unwrap_or("name") {
        "name" => Ok(false),
        "-name" => Ok(true),
        other => Err(ApiError::BadRequest(format!(
            "cannot sort by {other:?}; use sort=name or sort=-name"
        ))),
    }
}

fn parse_selector(text: Option<&str>) -> ApiResult<Option<Selector>> {
    text.filter(|t| !t.trim().is_empty())
        .map(|t| Selector::parse(t).map_err(|e| ApiError::BadRequest(e.to_string())))
        .transpose()
}

pub async fn list(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(plural): Path<String>,
    Query(query): Query<ListQuery>,
) -> ApiResult<Response> {
    require_admin(&state, &headers)?;
    let kind = kind_of(&plural)?;
    let selector = parse_selector(query.label_selector.as_deref())?;
    if query.watch == Some(true) {
        if query.state.is_some() || query.continue_token.is_some() {
            return Err(ApiError::BadRequest(
                "a watch takes no `state` (soft state changes are not watch events) and no `continue`; filter with labelSelector or fieldSelector"
                    .into(),
            ));
        }
        let filter = super::watch::WatchFilter {
            kind,
            name: super::watch::parse_field_selector(query.field_selector.as_deref())?,
            selector,
        };
        return super::watch::serve(&state, filter, query.resource_version.as_deref());
    }
    let descending = parse_sort(query.sort.as_deref())?;
    let limit = query.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let after = query
        .continue_token
        .as_deref()
        .map(decode_cursor)
        .transpose()?;
    let after = after.as_deref();
    let now = now_seconds();
    let fleet = state.fleet.read();
    let items_json = |items: Vec<Box<RawValue>>, next: Option<String>, total: Option<u64>| {
        Json(List {
            items,
            continue_token: next,
            total,
        })
        .into_response()
    };
    // With a filter, `total` counts what passes it: a walk over the kind's objects, which are
    // few for every kind but clusters (whose total comes from the label index).
    let filtered = selector.is_some() || query.state.is_some();
    match kind {
        Kind::Cluster => {
            let wanted_state = query
                .state
                .as_deref()
                .map(|s| {
                    ClusterState::parse(s).ok_or_else(|| {
                        ApiError::BadRequest(format!(
                            "unknown cluster state {s:?}; use Online, Offline or Pending"
                        ))
                    })
                })
                .transpose()?;
            let mut matching = match &selector {
                Some(selector) => fleet
                    .index()
                    .select(selector, fleet.interner(), fleet.all()),
                None => fleet.all().clone(),
            };
            if wanted_state == Some(ClusterState::Online) {
                matching &= fleet.online();
            }
            let total = (wanted_state.is_none() || wanted_state == Some(ClusterState::Online))
                .then(|| matching.len());
            let names = fleet
                .cluster_names()
                .range::<str, _>(after_cursor(after, descending))
                .map(|(name, ord)| (&**name, *ord));
            let (items, next) = page(
                names,
                descending,
                limit,
                |_, ordinal| {
                    matching.contains(*ordinal)
                        && wanted_state.is_none_or(|wanted| {
                            fleet.cluster(*ordinal).is_some_and(|c| c.state == wanted)
                        })
                },
                |ordinal| raw(&view::cluster(&fleet, ordinal)?),
            );
            Ok(items_json(items, next, total))
        }
        Kind::Bundle => Ok(page_of_map(
            fleet.bundle_names(),
            after,
            descending,
            limit,
            filtered,
            |ordinal| {
                fleet.bundle(*ordinal).is_some_and(|bundle| {
                    selector
                        .as_ref()
                        .is_none_or(|s| s.matches_map(&bundle.metadata.labels))
                        && query.state.as_deref().is_none_or(|wanted| {
                            view::bundle_state(&fleet, bundle).eq_ignore_ascii_case(wanted)
                        })
                })
            },
            |ordinal| raw(&view::bundle(&fleet, fleet.bundle(*ordinal)?)),
        )),
        Kind::ClusterGroup => Ok(page_of_map(
            fleet.groups(),
            after,
            descending,
            limit,
            filtered,
            |group| {
                selector
                    .as_ref()
                    .is_none_or(|s| s.matches_map(&group.metadata.labels))
            },
            |group| raw(&view::group(&fleet, &group.metadata.name, group)),
        )),
        Kind::RegistrationToken => Ok(page_of_map(
            fleet.tokens(),
            after,
            descending,
            limit,
            filtered,
            |token| {
                selector
                    .as_ref()
                    .is_none_or(|s| s.matches_map(&token.metadata.labels))
                    && query.state.as_deref().is_none_or(|wanted| {
                        view::token_state(token, now).eq_ignore_ascii_case(wanted)
                    })
            },
            |token| raw(&view::token(token, now, None)),
        )),
        Kind::GitRepo => Ok(page_of_map(
            fleet.gitrepos(),
            after,
            descending,
            limit,
            filtered,
            |repo| {
                selector
                    .as_ref()
                    .is_none_or(|s| s.matches_map(&repo.metadata.labels))
            },
            |repo| raw(&view::gitrepo(&fleet, &repo.metadata.name)?),
        )),
        Kind::Secret => Ok(page_of_map(
            fleet.secrets(),
            after,
            descending,
            limit,
            filtered,
            |secret| {
                selector
                    .as_ref()
                    .is_none_or(|s| s.matches_map(&secret.metadata.labels))
            },
            |secret| raw(&view::secret(&fleet, &secret.metadata.name)?),
        )),
    }
}

/// One page of a kind held in a name-sorted map, with `total` the number of its objects `keep`
/// accepts (the whole map when no filter is set).
fn page_of_map<'a, V>(
    map: &'a std::collections::BTreeMap<String, V>,
    after: Option<&str>,
    descending: bool,
    limit: usize,
    filtered: bool,
    mut keep: impl FnMut(&V) -> bool,
    render: impl FnMut(&'a V) -> Option<Box<RawValue>>,
) -> Response {
    let total = if filtered {
        map.values().filter(|value| keep(value)).count()
    } else {
        map.len()
    };
    let names = map
        .range::<str, _>(after_cursor(after, descending))
        .map(|(name, value)| (name.as_str(), value));
    let (items, next) = page(names, descending, limit, |_, value| keep(value), render);
    Json(List {
        items,
        continue_token: next,
        total: Some(total as u64),
    })
    .into_response()
}
