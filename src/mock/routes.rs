//! Where requests that no expectation answers go: declared routes by path prefix (the mockserver
//! seed forwards `/mds/*` and `/dms/*` to two backends, `/logger*` to the log backend's `/v2`),
//! then the catch-all `--upstream`. The longest matching prefix wins; its `rewrite` replaces the
//! prefix in the forwarded path.

use std::time::Duration;

use serde::Deserialize;

use super::proxy::{ProxyPolicy, Upstream};

/// Longest `timeout_ms` of a route: an hour.
const MAX_TIMEOUT_MS: u64 = 3_600_000;

/// `[[services.mock.routes]]` (and `--route`): requests whose path starts with `prefix` go to
/// `upstream`, the prefix replaced by `rewrite` when given; the proxy policy of that upstream.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RouteDecl {
    pub prefix: String,
    pub upstream: String,
    pub rewrite: Option<String>,
    /// Longest wait for the upstream, in milliseconds (default 30 s; then 504).
    pub timeout_ms: Option<u64>,
    /// Most requests in flight to the upstream; beyond it a 503 at once.
    pub limit: Option<usize>,
    /// Send a second identical request when the first has not answered after this long.
    pub hedge_after_ms: Option<u64>,
}

impl RouteDecl {
    /// The declared policy, checked: the error names the field and the route.
    pub fn policy(&self) -> Result<ProxyPolicy, String> {
        policy(
            &format!("route {}", self.prefix),
            self.timeout_ms,
            self.limit,
            self.hedge_after_ms,
        )
    }
}

/// A proxy policy from its declared numbers; `what` names the route or upstream in errors.
pub fn policy(
    what: &str,
    timeout_ms: Option<u64>,
    limit: Option<usize>,
    hedge_after_ms: Option<u64>,
) -> Result<ProxyPolicy, String> {
    let mut policy = ProxyPolicy::default();
    if let Some(ms) = timeout_ms {
        if ms == 0 || ms > MAX_TIMEOUT_MS {
            return Err(format!(
                "{what}: timeout_ms = {ms} must be from 1 to {MAX_TIMEOUT_MS} (an hour)"
            ));
        }
        policy.timeout = Duration::from_millis(ms);
    }
    if let Some(limit) = limit {
        if limit == 0 {
            return Err(format!(
                "{what}: limit = 0 would refuse every request; leave it out for no limit"
            ));
        }
        policy.limit = Some(limit);
    }
    if let Some(ms) = hedge_after_ms {
        if ms == 0 || Duration::from_millis(ms) >= policy.timeout {
            return Err(format!(
                "{what}: hedge_after_ms = {ms} must be above 0 and below the timeout ({} ms)",
                policy.timeout.as_millis()
            ));
        }
        policy.hedge_after = Some(Duration::from_millis(ms));
    }
    Ok(policy)
}

/// A declared route: requests whose path starts with `prefix` go to `upstream`.
#[derive(Clone)]
pub struct Route {
    pub prefix: String,
    pub upstream: Upstream,
    /// Replaces `prefix` in the forwarded path (`None`: the path is forwarded as it is).
    pub rewrite: Option<String>,
}

/// The routes and the catch-all upstream.
#[derive(Clone, Default)]
pub struct Routes {
    /// Longest prefix first.
    routes: Vec<Route>,
    fallback: Option<Upstream>,
}

/// Where one request goes: the upstream, and the path to forward when a route rewrote it.
pub struct Destination<'a> {
    pub upstream: &'a Upstream,
    pub path: Option<String>,
}

impl Routes {
    /// Routes as declared and the catch-all upstream URL with its policy; the error names the
    /// route that is wrong.
    pub fn new(
        declared: &[RouteDecl],
        fallback: Option<&str>,
        fallback_policy: ProxyPolicy,
    ) -> Result<Routes, String> {
        let mut routes = Vec::new();
        for decl in declared {
            let (prefix, url, rewrite) = (&decl.prefix, &decl.upstream, &decl.rewrite);
            if !prefix.starts_with('/') {
                return Err(format!(
                    "route prefix {prefix:?} must start with `/` (e.g. \"/mds\")"
                ));
            }
            if let Some(rewrite) = rewrite {
                if !rewrite.is_empty() && !rewrite.starts_with('/') {
                    return Err(format!(
                        "route {prefix}: rewrite {rewrite:?} must start with `/` (or be empty)"
                    ));
                }
            }
            let upstream = Upstream::with_policy(url, decl.policy()?)
                .map_err(|e| format!("route {prefix}: {e}"))?;
            routes.push(Route {
                prefix: prefix.clone(),
                upstream,
                rewrite: rewrite.clone(),
            });
        }
        routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        let fallback = fallback
            .map(|url| Upstream::with_policy(url, fallback_policy))
            .transpose()?;
        Ok(Routes { routes, fallback })
    }

    /// Whether any route is declared (then an unrouted request is the seed's 404).
    pub fn has_routes(&self) -> bool {
        !self.routes.is_empty()
    }

    /// Where a request for `path` goes, if anywhere.
    pub fn destination(&self, path: &str) -> Option<Destination<'_>> {
        if let Some(route) = self.routes.iter().find(|r| path.starts_with(&r.prefix)) {
            let path = route
                .rewrite
                .as_ref()
                .map(|rewrite| format!("{rewrite}{}", &path[route.prefix.len()..]));
            return Some(Destination {
                upstream: &route.upstream,
                path,
            });
        }
        self.fallback.as_ref().map(|upstream| Destination {
            upstream,
            path: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(prefix: &str, upstream: &str, rewrite: Option<&str>) -> RouteDecl {
        RouteDecl {
            prefix: prefix.into(),
            upstream: upstream.into(),
            rewrite: rewrite.map(str::to_string),
            ..RouteDecl::default()
        }
    }

    fn routes() -> Routes {
        Routes::new(
            &[
                route("/mds", "http://127.0.0.1:1", None),
                route("/logger", "http://127.0.0.1:2", Some("/v2")),
                route("/externalLogger", "http://127.0.0.1:3", Some("/v1/ingest")),
            ],
            Some("http://127.0.0.1:9"),
            ProxyPolicy::default(),
        )
        .unwrap()
    }

    #[test]
    fn the_longest_prefix_wins_and_rewrites_its_prefix() {
        let routes = routes();
        let mds = routes.destination("/mds/models/1").unwrap();
        assert_eq!(mds.upstream.url, "http://127.0.0.1:1");
        assert_eq!(mds.path, None, "no rewrite: the path goes as it is");
        let logger = routes.destination("/logger/events").unwrap();
        assert_eq!(logger.path.as_deref(), Some("/v2/events"));
        let ingest = routes.destination("/externalLogger").unwrap();
        assert_eq!(ingest.upstream.url, "http://127.0.0.1:3");
        assert_eq!(ingest.path.as_deref(), Some("/v1/ingest"));
        let other = routes.destination("/elsewhere").unwrap();
        assert_eq!(other.upstream.url, "http://127.0.0.1:9", "the catch-all");
        let without_fallback = Routes::new(&[], None, ProxyPolicy::default()).unwrap();
        assert!(without_fallback.destination("/x").is_none());
    }

    #[test]
    fn bad_routes_are_named() {
        let err = |prefix: &str, url: &str, rewrite: Option<&str>| {
            Routes::new(&[route(prefix, url, rewrite)], None, ProxyPolicy::default())
                .err()
                .unwrap()
        };
        assert!(err("mds", "http://x", None).contains("must start with `/`"));
        assert!(err("/mds", "ftp://x", None).contains("route /mds"));
        assert!(err("/mds", "http://x", Some("v2")).contains("rewrite"));
    }

    #[test]
    fn policies_are_bounded_and_named() {
        let decl = |timeout_ms, limit, hedge_after_ms| RouteDecl {
            timeout_ms,
            limit,
            hedge_after_ms,
            ..route("/api", "http://127.0.0.1:1", None)
        };
        let policy = decl(Some(200), Some(4), Some(50)).policy().unwrap();
        assert_eq!(policy.timeout, Duration::from_millis(200));
        assert_eq!(policy.limit, Some(4));
        assert_eq!(policy.hedge_after, Some(Duration::from_millis(50)));
        assert_eq!(
            decl(None, None, None).policy().unwrap(),
            ProxyPolicy::default()
        );
        let error = |d: RouteDecl| d.policy().unwrap_err();
        assert!(error(decl(Some(0), None, None)).contains("route /api: timeout_ms"));
        assert!(error(decl(None, Some(0), None)).contains("limit = 0"));
        assert!(error(decl(Some(100), None, Some(100))).contains("below the timeout"));
    }
}
