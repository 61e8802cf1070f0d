//! A console client for tests: signs in through the login form like a browser, keeps the
//! session cookie and the page's CSRF token, and posts forms without following redirects.

use crate::support::Server;

pub struct Web {
    http: reqwest::Client,
    base: String,
    pub cookie: String,
    pub csrf: String,
}

/// The CSRF token of the first form on a page.
pub fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a form with a CSRF token") + 19;
    html[at..].split('"').next().unwrap().to_owned()
}

/// Posts the sign-in form as a browser does: the form's page first (its token, and the cookie
/// holding the same token), then the form.
pub async fn login_form(
    http: &reqwest::Client,
    s: &Server,
    user: &str,
    password: &str,
    next: &str,
) -> reqwest::Response {
    let page = http.get(s.url("/login")).send().await.unwrap();
    let set = page.headers()["set-cookie"].to_str().unwrap().to_owned();
    let cookie = set.split(';').next().unwrap().to_owned();
    let token = csrf_of(&page.text().await.unwrap());
    let f = [("username", user), ("password", password), ("next", next), ("csrf", &token)];
    http.post(s.url("/login")).header("cookie", cookie).form(&f).send().await.unwrap()
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

impl Web {
    /// Signs in through `POST /login`; panics unless it redirects with a session cookie.
    pub async fn sign_in(s: &Server, user: &str, password: &str) -> Web {
        let http = client();
        let r = login_form(&http, s, user, password, "/orgs").await;
        assert_eq!(r.status(), 303, "sign-in of {user}");
        let set = r.headers()["set-cookie"].to_str().unwrap().to_owned();
        let cookie = set.split(';').next().unwrap().to_owned();
        let mut w = Web { http, base: s.url(""), cookie, csrf: String::new() };
        let (status, page) = w.get("/tokens").await;
        assert_eq!(status, 200);
        w.csrf = csrf_of(&page);
        w
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let r = self.http.get(format!("{}{path}", self.base)).header("cookie", &self.cookie).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// Posts a form with this session's CSRF token; returns status, `Location` and body.
    pub async fn post(&self, path: &str, fields: &[(&str, &str)]) -> (u16, String, String) {
        let mut f: Vec<(&str, &str)> = vec![("csrf", &self.csrf)];
        f.extend_from_slice(fields);
        self.post_raw(path, &f, &[]).await
    }

    /// Posts exactly these fields, with extra headers.
    pub async fn post_raw(
        &self,
        path: &str,
        fields: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> (u16, String, String) {
        let mut rb = self.http.post(format!("{}{path}", self.base)).header("cookie", &self.cookie).form(fields);
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        let r = rb.send().await.unwrap();
        let loc = r.headers().get("location").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        (r.status().as_u16(), loc, r.text().await.unwrap())
    }
}
