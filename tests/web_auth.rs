//! Sign-in, sessions, roles, CSRF and API tokens on the web side: the reference's contracts C1–C8, every
//! route of the access table tried as each kind of caller, and the refusals an attacker meets.

mod common;

use common::{Browser, TestApp, api_client, spawn_app};
use oee_core::access::Role;
use oee_core::store::account::TokenScope;
use reqwest::Method;

fn location(r: &reqwest::Response) -> String {
    r.headers().get("location").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_contracts_c1_c2_c7_hold() {
    let t = spawn_app().await;
    let b = Browser::new(&t.http);
    let r = b.get("/").await;
    assert_eq!((r.status().as_u16(), location(&r)), (302, "/login".into()), "C1");
    let r = b.get("/status").await;
    assert_eq!((r.status().as_u16(), location(&r)), (302, "/login?next=%2Fstatus".into()), "C2");
    let r = b.get("/logout").await;
    assert_eq!(r.status(), 405, "C7");
    assert_eq!(r.headers()["allow"], "OPTIONS, POST");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeded_admin_signs_in_and_must_choose_a_new_password_first() {
    let t = spawn_app().await;
    let b = Browser::new(&t.http);
    // C6: a wrong password goes back to the form, which says why.
    let r = b.sign_in("admin", "wrong").await;
    assert_eq!((r.status().as_u16(), location(&r)), (302, "/login".into()), "C6");
    let page = b.get("/login").await.text().await.unwrap();
    assert!(page.contains("Invalid username or password"), "{page}");
    // C5, with the documented departure: the seeded password leads to the password form, not /status.
    let r = b.sign_in("admin", "digitme2").await;
    assert_eq!((r.status().as_u16(), location(&r)), (302, "/account/password".into()));
    for path in ["/status", "/admin-home", "/"] {
        let r = b.get(path).await;
        assert_eq!(r.status(), 302, "{path}");
        assert!(["/account/password", "/status"].contains(&location(&r).as_str()), "{path}: {}", location(&r));
    }
    let too_short = b
        .post_form(
            "/account/password",
            &[("current_password", "digitme2"), ("password", "short"), ("confirm_password", "short")],
        )
        .await;
    assert_eq!(too_short.status(), 400);
    assert!(too_short.text().await.unwrap().contains("at least 8 characters"));
    let same = b
        .post_form(
            "/account/password",
            &[("current_password", "digitme2"), ("password", "digitme2"), ("confirm_password", "digitme2")],
        )
        .await;
    assert_eq!(same.status(), 400, "the seeded password cannot be chosen again");
    let r = b
        .post_form(
            "/account/password",
            &[("current_password", "digitme2"), ("password", "plant-secret-7"), ("confirm_password", "plant-secret-7")],
        )
        .await;
    assert_eq!((r.status().as_u16(), location(&r)), (302, "/status".into()));
    assert_eq!(b.get("/admin-home").await.status(), 200);
    // A second browser signs in with the new password straight to /status (C5's target).
    let other = Browser::new(&t.http);
    let r = other.sign_in("admin", "plant-secret-7").await;
    assert_eq!((r.status().as_u16(), location(&r)), (302, "/status".into()));
    let third = Browser::new(&t.http);
    assert_eq!(third.sign_in("admin", "digitme2").await.status(), 302);
    assert!(third.get("/login").await.text().await.unwrap().contains("Invalid username or password"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c3_lists_users_to_signed_in_callers_and_c8_keeps_admin_pages_from_others() {
    let t = spawn_app().await;
    let anonymous = reqwest::Client::new().get(format!("{}/api/users", t.http)).send().await.unwrap();
    assert_eq!(anonymous.status(), 401, "the reference leaked every user name to anybody");
    assert!(anonymous.text().await.unwrap().contains("Authorization: Bearer"));
    let (viewer, _) = Browser::signed_in_as(&t, "vera", Role::Viewer).await;
    let r = viewer.get("/api/users").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(
        r.text().await.unwrap(),
        "[{\"admin\":true,\"user_id\":1,\"username\":\"admin\"},{\"admin\":false,\"user_id\":2,\"username\":\"vera\"}]\n"
    );
    let r = viewer.get("/admin-home").await;
    assert_eq!(r.status(), 403, "C8");
}

/// A path of the table with its parameters filled in (ids that exist nowhere, so writes change nothing).
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|seg| if seg.starts_with('{') { "999999".to_string() } else { seg.to_string() })
        .collect::<Vec<_>>()
        .join("/")
}

/// Routes that end the caller's session go last.
fn ends_session(path: &str) -> bool {
    path.starts_with("/logout")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_each_role_as_the_access_table_says() {
    let t = spawn_app().await;
    let mut table = oee_web::route_table();
    table.sort_by_key(|(_, p, _)| ends_session(p));
    let anonymous = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    for (method, path, access) in &table {
        let url = format!("{}{}", t.http, concrete(path));
        let r = anonymous.request(method.clone(), &url).send().await.unwrap();
        let status = r.status().as_u16();
        if let oee_web::access::Access::Role(_) = access {
            if path.starts_with("/api/") {
                assert_eq!(status, 401, "anonymous {method} {path}");
            } else {
                assert_eq!(status, 302, "anonymous {method} {path}");
                assert!(location(&r).starts_with("/login?next="), "anonymous {method} {path}");
            }
        } else {
            assert!(status != 401 && status != 403 && status < 500, "anonymous {method} {path}: {status}");
        }
    }
    let mut checked = 0;
    for role in [Role::Viewer, Role::Supervisor, Role::Admin] {
        let name = format!("user-{role}");
        let (mut b, _) = Browser::signed_in_as(&t, &name, role).await;
        let mut csrf = b.csrf().await;
        for (method, path, access) in &table {
            if ends_session(path) {
                b = Browser::new(&t.http);
                assert_eq!(b.sign_in(&name, "password-1").await.status(), 302);
                csrf = b.csrf().await;
            }
            let url = format!("{}{}", t.http, concrete(path));
            let mut req = b.client.request(method.clone(), &url);
            if *method != Method::GET {
                req = req.header("x-csrf-token", &csrf);
            }
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let allowed = match access {
                oee_web::access::Access::Public => true,
                oee_web::access::Access::Role(needed) => role >= *needed,
            };
            if allowed {
                assert!(
                    status != 401 && status != 403 && !location(&r).starts_with("/login?") && status < 500,
                    "{role} {method} {path}: {status} {}",
                    location(&r)
                );
            } else {
                assert_eq!(status, 403, "{role} {method} {path}");
            }
            checked += 1;
        }
    }
    for (scope, role) in [(TokenScope::Read, Role::Viewer), (TokenScope::Admin, Role::Admin)] {
        let client = api_client(&t.pool, scope).await;
        for (method, path, access) in table.iter().filter(|(_, p, _)| p.starts_with("/api/")) {
            let r = client.request(method.clone(), format!("{}{}", t.http, concrete(path))).send().await.unwrap();
            let status = r.status().as_u16();
            match access {
                oee_web::access::Access::Role(needed) if role < *needed => {
                    assert_eq!(status, 403, "{scope:?} token {method} {path}")
                }
                _ => {
                    assert!(status != 401 && status != 403 && status < 500, "{scope:?} token {method} {path}: {status}")
                }
            }
        }
    }
    assert!(checked > 60, "the table has the routes it should: {checked}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_write_needs_its_csrf_token() {
    let t = spawn_app().await;
    let (admin, _) = Browser::signed_in_as(&t, "ann", Role::Admin).await;
    let form = [("username", "op1"), ("role", "operator"), ("password", "1234"), ("confirm_password", "1234")];
    let no_token = admin.client.post(format!("{}/admin/users/new", t.http)).form(&form).send().await.unwrap();
    assert_eq!(no_token.status(), 403);
    assert!(no_token.text().await.unwrap().contains("security token"));
    let mut wrong: Vec<(&str, &str)> = form.to_vec();
    wrong.push(("csrf_token", "0000"));
    let r = admin.client.post(format!("{}/admin/users/new", t.http)).form(&wrong).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let json = admin
        .client
        .post(format!("{}/api/v1/users", t.http))
        .json(&serde_json::json!({"username": "op1", "role": "operator", "password": "1234"}))
        .send()
        .await
        .unwrap();
    assert_eq!(json.status(), 403, "a cookie-authenticated JSON write needs X-CSRF-Token");
    let users: Vec<String> = sqlx::query_scalar("SELECT username FROM app_user").fetch_all(&t.pool).await.unwrap();
    assert!(!users.contains(&"op1".to_string()), "nothing was created: {users:?}");
    let r = admin.post_form("/admin/users/new", &form).await;
    assert_eq!((r.status().as_u16(), location(&r)), (302, "/admin/users".into()));
    assert!(admin.get("/admin/users").await.text().await.unwrap().contains("op1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_forms_refuse_bad_input_beside_the_field() {
    let t = spawn_app().await;
    let (admin, _) = Browser::signed_in_as(&t, "ann", Role::Admin).await;
    type Case<'a> = (&'a [(&'a str, &'a str)], u16, &'a str);
    let cases: [Case<'_>; 4] = [
        (
            &[("username", "ann"), ("role", "viewer"), ("password", "password-2"), ("confirm_password", "password-2")],
            409,
            "already exists",
        ),
        (
            &[("username", "op"), ("role", "operator"), ("password", "12ab"), ("confirm_password", "12ab")],
            400,
            "4 to 12 digits",
        ),
        (
            &[("username", "vic"), ("role", "viewer"), ("password", "password-2"), ("confirm_password", "password-3")],
            400,
            "differ",
        ),
        (
            &[("username", "vic"), ("role", "boss"), ("password", "password-2"), ("confirm_password", "password-2")],
            400,
            "not a role",
        ),
    ];
    for (form, status, text) in cases {
        let r = admin.post_form("/admin/users/new", form).await;
        assert_eq!(r.status().as_u16(), status, "{form:?}");
        let html = r.text().await.unwrap();
        assert!(html.contains(r#"<small class="error" role="alert">"#) && html.contains(text), "{form:?}: {html}");
    }
    // The last administrator cannot demote themselves.
    let ann: i32 =
        sqlx::query_scalar("SELECT id FROM app_user WHERE username = 'ann'").fetch_one(&t.pool).await.unwrap();
    sqlx::query("UPDATE app_user SET active = false WHERE username = 'admin'").execute(&t.pool).await.unwrap();
    let r = admin
        .post_form(&format!("/admin/users/{ann}"), &[("username", "ann"), ("role", "viewer"), ("active", "on")])
        .await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("last active administrator"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_end_on_sign_out_idle_time_deactivation_and_a_new_password() {
    let t = spawn_app().await;
    let (admin, _) = Browser::signed_in_as(&t, "ann", Role::Admin).await;
    let (viewer, vid) = Browser::signed_in_as(&t, "vic", Role::Viewer).await;
    assert_eq!(viewer.get("/status").await.status(), 200);
    // An administrator sets a new password: the user's sessions end, and they must choose their own.
    let r = admin
        .post_form(
            &format!("/admin/users/{vid}/password"),
            &[("password", "temporary-9"), ("confirm_password", "temporary-9")],
        )
        .await;
    assert_eq!(r.status(), 302);
    assert_eq!(location(&viewer.get("/status").await), "/login?next=%2Fstatus");
    let r = viewer.sign_in("vic", "temporary-9").await;
    assert_eq!(location(&r), "/account/password");
    // Idle too long: the session is gone.
    sqlx::query("UPDATE web_session SET last_seen_at = now() - interval '2 days' WHERE user_id = $1")
        .bind(vid)
        .execute(&t.pool)
        .await
        .unwrap();
    assert_eq!(location(&viewer.get("/status").await), "/login?next=%2Fstatus");
    // Deactivated: no session works and signing in is refused with the reason.
    let viewer = Browser::new(&t.http);
    viewer.sign_in("vic", "temporary-9").await;
    let r = admin.post_form(&format!("/admin/users/{vid}"), &[("username", "vic"), ("role", "viewer")]).await;
    assert_eq!(r.status(), 302, "saved without `active`: deactivated");
    assert_eq!(viewer.get("/status").await.status(), 302);
    let r = viewer.sign_in("vic", "temporary-9").await;
    assert_eq!(location(&r), "/login");
    assert!(viewer.get("/login").await.text().await.unwrap().contains("deactivated"));
    // Signing out ends the session for good: the old cookie opens nothing.
    let cookie: String = sqlx::query_scalar(
        "SELECT digest FROM web_session WHERE user_id = (SELECT id FROM app_user WHERE username = 'ann')",
    )
    .fetch_one(&t.pool)
    .await
    .unwrap();
    assert!(!cookie.is_empty());
    let r = admin.post_form("/logout", &[]).await;
    assert_eq!((r.status().as_u16(), location(&r)), (302, "/login".into()));
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM web_session WHERE digest = $1")
        .bind(&cookie)
        .fetch_one(&t.pool)
        .await
        .unwrap();
    assert_eq!(left, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_is_rate_limited_per_user_and_operators_use_tablets_only() {
    let t = spawn_app().await;
    oee_core::store::user::add_user(&t.pool, "vic", "password-1", Role::Viewer, false).await.unwrap();
    let b = Browser::new(&t.http);
    for _ in 0..5 {
        assert_eq!(location(&b.sign_in("vic", "guess").await), "/login");
    }
    let r = b.sign_in("vic", "password-1").await;
    assert_eq!(r.status(), 429, "the right password after 5 failures waits for the window");
    assert!(r.text().await.unwrap().contains("Too many failed sign-ins"));
    let other = b.sign_in("admin", "digitme2").await;
    assert_eq!(other.status(), 302, "other users are not locked out");
    sqlx::query("UPDATE sign_in_failure SET at = at - interval '1 hour'").execute(&t.pool).await.unwrap();
    assert_eq!(location(&Browser::new(&t.http).sign_in("vic", "password-1").await), "/status");
    oee_core::store::user::add_user(&t.pool, "olga", "2468", Role::Operator, false).await.unwrap();
    let op = Browser::new(&t.http);
    assert_eq!(location(&op.sign_in("olga", "2468").await), "/login");
    assert!(op.get("/login").await.text().await.unwrap().contains("tablets only"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_leads_only_to_local_pages_and_pages_carry_the_security_headers() {
    let t = spawn_app().await;
    oee_core::store::user::add_user(&t.pool, "vic", "password-1", Role::Viewer, false).await.unwrap();
    for (next, to) in [("/tables", "/tables"), ("//evil.example/x", "/status"), ("https://evil.example", "/status")] {
        let b = Browser::new(&t.http);
        let token = b.form_token("/login").await;
        let r = b
            .client
            .post(format!("{}/login", t.http))
            .form(&[("username", "vic"), ("password", "password-1"), ("csrf_token", &token), ("next", next)])
            .send()
            .await
            .unwrap();
        assert_eq!(location(&r), to, "{next}");
        let cookie =
            r.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_string()).collect::<Vec<_>>();
        let session = cookie.iter().find(|c| c.starts_with("oee_session=")).expect("a session cookie");
        assert!(session.contains("HttpOnly") && session.contains("SameSite=Lax"), "{session}");
        assert!(!session.contains("Secure"), "no https public_url: {session}");
    }
    let r = reqwest::get(format!("{}/login", t.http)).await.unwrap();
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"), "{csp}");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert!(!r.text().await.unwrap().contains("<script"), "no inline script");
    // A sign-in form posted without its cookie (from another site) is refused.
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("{}/login", t.http))
        .form(&[("username", "vic"), ("password", "password-1"), ("csrf_token", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(location(&r), "/login");
    assert!(!r.headers().get_all("set-cookie").iter().any(|c| c.to_str().unwrap().starts_with("oee_session=")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_tokens_are_scoped_and_revocable() {
    let t: TestApp = spawn_app().await;
    let (admin, _) = Browser::signed_in_as(&t, "ann", Role::Admin).await;
    let csrf = admin.csrf().await;
    let r = admin
        .client
        .post(format!("{}/api/v1/tokens", t.http))
        .header("x-csrf-token", &csrf)
        .json(&serde_json::json!({"name": "erp export", "scope": "read"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let created: serde_json::Value = r.json().await.unwrap();
    let secret = created["secret"].as_str().unwrap().to_string();
    assert_eq!(created["created_by"], "ann");
    let stored: String =
        sqlx::query_scalar("SELECT digest FROM api_token WHERE name = 'erp export'").fetch_one(&t.pool).await.unwrap();
    assert_ne!(stored, secret, "only a digest is stored");
    let script = reqwest::Client::new();
    let get = |path: &'static str| script.get(format!("{}{path}", t.http)).bearer_auth(&secret).send();
    assert_eq!(get("/api/users").await.unwrap().status(), 200);
    assert_eq!(get("/api/v1/users").await.unwrap().status(), 403, "a read token cannot administer");
    let page = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = page.get(format!("{}/status", t.http)).bearer_auth(&secret).send().await.unwrap();
    assert_eq!(r.status(), 302, "pages take sessions, not tokens");
    let id = created["id"].as_i64().unwrap();
    let r = admin
        .client
        .delete(format!("{}/api/v1/tokens/{id}", t.http))
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = get("/api/users").await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("revoked"));
    let dup = admin
        .client
        .post(format!("{}/api/v1/tokens", t.http))
        .header("x-csrf-token", &csrf)
        .json(&serde_json::json!({"name": "erp export", "scope": "admin"}))
        .send()
        .await
        .unwrap();
    assert_eq!(dup.status(), 409);
    assert_eq!(dup.json::<serde_json::Value>().await.unwrap()["field"], "name");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_https_the_cookie_is_secure_and_one_address_is_limited_across_names() {
    let db = common::seeded_db().await;
    let mut config = common::test_config(&db);
    config.http.public_url = "https://oee.example.com".into();
    config.web.sign_in_max_failures_per_address = 3;
    let t = common::spawn_app_with(config, db, oee_server::Services::ALL).await;
    oee_core::store::user::add_user(&t.pool, "vic", "password-1", Role::Viewer, false).await.unwrap();
    let b = Browser::new(&t.http);
    let r = b.sign_in("vic", "password-1").await;
    assert_eq!(r.status(), 302);
    let session = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.starts_with("oee_session="))
        .expect("a session cookie");
    assert!(session.contains("; Secure"), "{session}");
    // Three names guessed from one address: the fourth attempt, of any name, waits.
    let guesser = Browser::new(&t.http);
    for name in ["a", "b", "c"] {
        assert_eq!(location(&guesser.sign_in(name, "guess").await), "/login");
    }
    assert_eq!(guesser.sign_in("admin", "digitme2").await.status(), 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_address_gets_404_with_a_message() {
    let t = spawn_app().await;
    let r = reqwest::get(format!("{}/api/v1/no-such-thing", t.http)).await.unwrap();
    assert_eq!(r.status(), 404);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("openapi.json"), "{body}");
    let r = reqwest::get(format!("{}/no-such-page", t.http)).await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.headers()["content-security-policy"].to_str().unwrap().contains("frame-ancestors"));
    assert!(r.text().await.unwrap().contains("There is no page at /no-such-page"));
}
