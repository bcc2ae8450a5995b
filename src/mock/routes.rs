//! Where requests that no expectation answers go: declared routes by path prefix (the mockserver
//! seed forwards `/mds/*` and `/dms/*` to two backends, `/logger*` to the log backend's `/v2`),
//! then the catch-all `--upstream`. The longest matching prefix wins; its `rewrite` replaces the
//! prefix in the forwarded path.

use std::time::Duration;

use super::proxy::Upstream;

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
    /// Routes from `(prefix, upstream URL, rewrite)` and the catch-all upstream URL; the error
    /// names the route that is wrong.
    pub fn new(
        declared: &[(String, String, Option<String>)],
        fallback: Option<&str>,
        timeout: Duration,
    ) -> Result<Routes, String> {
        let mut routes = Vec::new();
        for (prefix, url, rewrite) in declared {
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
            let upstream =
                Upstream::parse(url, timeout).map_err(|e| format!("route {prefix}: {e}"))?;
            routes.push(Route {
                prefix: prefix.clone(),
                upstream,
                rewrite: rewrite.clone(),
            });
        }
        routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        let fallback = fallback
            .map(|url| Upstream::parse(url, timeout))
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

    fn routes() -> Routes {
        Routes::new(
            &[
                ("/mds".into(), "http://127.0.0.1:1".into(), None),
                (
                    "/logger".into(),
                    "http://127.0.0.1:2".into(),
                    Some("/v2".into()),
                ),
                (
                    "/externalLogger".into(),
                    "http://127.0.0.1:3".into(),
                    Some("/v1/ingest".into()),
                ),
            ],
            Some("http://127.0.0.1:9"),
            Duration::from_secs(1),
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
        let without_fallback = Routes::new(&[], None, Duration::from_secs(1)).unwrap();
        assert!(without_fallback.destination("/x").is_none());
    }

    #[test]
    fn bad_routes_are_named() {
        let err = |prefix: &str, url: &str, rewrite: Option<&str>| {
            Routes::new(
                &[(prefix.into(), url.into(), rewrite.map(str::to_string))],
                None,
                Duration::from_secs(1),
            )
            .err()
            .unwrap()
        };
        assert!(err("mds", "http://x", None).contains("must start with `/`"));
        assert!(err("/mds", "ftp://x", None).contains("route /mds"));
        assert!(err("/mds", "http://x", Some("v2")).contains("rewrite"));
    }
}
