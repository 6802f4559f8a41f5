//! Server-rendered pages: the templates (compiled into the binary), the context every page shares (title,
//! navigation, who is signed in, CSRF token, flash message), and the generic pieces the admin pages are
//! made of: a list ([`ListPage`]) and a form whose fields carry their own error ([`FormPage`], [`Field`]).

use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use handlebars::Handlebars;
use oee_core::access::Role;
use serde::Serialize;

use crate::WebState;
use crate::access::Caller;
use crate::operator::Asset;

/// Every template, by name. Pages use `{{#> layout}}…{{/layout}}`; `field` renders one form input.
const TEMPLATES: &[(&str, &str)] = &[
    ("layout", include_str!("../templates/layout.hbs")),
    ("field", include_str!("../templates/field.hbs")),
    ("sign_in", include_str!("../templates/sign_in.hbs")),
    ("password", include_str!("../templates/password.hbs")),
    ("message", include_str!("../templates/message.hbs")),
    ("list", include_str!("../templates/list.hbs")),
    ("form", include_str!("../templates/form.hbs")),
    ("admin_home", include_str!("../templates/admin_home.hbs")),
    ("shift_week", include_str!("../templates/shift_week.hbs")),
    ("tablets", include_str!("../templates/tablets.hbs")),
    ("status", include_str!("../templates/status.hbs")),
    ("machine", include_str!("../templates/machine.hbs")),
    ("tables", include_str!("../templates/tables.hbs")),
    ("board", include_str!("../templates/board.hbs")),
    ("create_dashboard", include_str!("../templates/create_dashboard.hbs")),
    ("timeline", include_str!("../templates/timeline.hbs")),
    ("help", include_str!("../templates/help.hbs")),
    ("graphs", include_str!("../templates/graphs.hbs")),
    ("explain", include_str!("../templates/explain.hbs")),
];

const STYLESHEET: Asset = Asset::new(include_str!("../assets/app.css"), "text/css; charset=utf-8");

/// The compiled templates.
pub(crate) struct Pages {
    hb: Handlebars<'static>,
}

impl Pages {
    /// Compiles every template; a template that does not compile is a bug caught by the unit tests.
    pub(crate) fn new() -> Pages {
        let mut hb = Handlebars::new();
        hb.set_strict_mode(cfg!(test));
        for (name, text) in TEMPLATES {
            if let Err(e) = hb.register_template_string(name, *text) {
                tracing::error!("template {name}: {e}");
            }
        }
        Pages { hb }
    }

    /// Renders page template `name` with `page` as its context.
    pub(crate) fn render<T: Serialize>(&self, name: &str, page: &Page<T>) -> Response {
        match self.hb.render(name, page) {
            Ok(html) => Html(html).into_response(),
            Err(e) => {
                tracing::error!("page {name} failed to render: {e}");
                (StatusCode::INTERNAL_SERVER_ERROR, "this page failed to render; the server's log says why")
                    .into_response()
            }
        }
    }
}

/// A 302 to `location` (the status the reference's redirects have; axum's `Redirect::to` answers 303).
pub(crate) fn found(location: &str) -> Response {
    match axum::http::HeaderValue::from_str(location) {
        Ok(v) => (StatusCode::FOUND, [(axum::http::header::LOCATION, v)]).into_response(),
        Err(_) => (StatusCode::FOUND, [(axum::http::header::LOCATION, "/")]).into_response(),
    }
}

/// What the layout shows of the signed-in person.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PageUser {
    pub name: String,
    pub role: Role,
    pub is_admin: bool,
    pub is_supervisor: bool,
}

/// The context of every page: the layout's parts and the page's own `body`.
#[derive(Debug, Serialize)]
pub(crate) struct Page<T: Serialize> {
    pub title: String,
    /// The navigation entry to highlight: status, admin, graphs, tables, dashboard, help, or empty.
    pub nav: &'static str,
    pub user: Option<PageUser>,
    pub csrf: String,
    pub flash: Option<String>,
    pub version: &'static str,
    pub body: T,
}

impl<T: Serialize> Page<T> {
    /// A page for `caller` (or nobody); shows and clears the session's flash message.
    pub(crate) async fn new(
        state: &WebState,
        caller: Option<&Caller>,
        title: impl Into<String>,
        nav: &'static str,
        body: T,
    ) -> Page<T> {
        let mut flash = None;
        if let Some(s) = caller.and_then(|c| c.session.as_ref())
            && s.flash.is_some()
        {
            flash = s.flash.clone();
            if let Err(e) = oee_core::store::account::clear_flash(&state.pool, &s.digest).await {
                tracing::warn!("clearing a flash message: {e}");
            }
        }
        Page {
            title: title.into(),
            nav,
            user: caller.map(|c| PageUser {
                name: c.name.clone(),
                role: c.role,
                is_admin: c.role >= Role::Admin,
                is_supervisor: c.role >= Role::Supervisor,
            }),
            csrf: caller.map(|c| c.csrf().to_string()).unwrap_or_default(),
            flash,
            version: env!("CARGO_PKG_VERSION"),
            body,
        }
    }
}

/// Leaves a message for the caller's next page ("Machine saved").
pub(crate) async fn flash(state: &WebState, caller: &Caller, message: &str) {
    if let Some(s) = &caller.session
        && let Err(e) = oee_core::store::account::set_flash(&state.pool, &s.digest, message).await
    {
        tracing::warn!("saving a flash message: {e}");
    }
}

/// A page with a heading and a paragraph (placeholders, refusals shown as pages).
#[derive(Debug, Serialize)]
pub(crate) struct Message {
    pub heading: String,
    pub text: String,
}

/// An input of a form, with the value to show and the refusal to show beside it.
#[derive(Debug, Clone, Serialize, Default)]
pub(crate) struct Field {
    pub name: &'static str,
    pub label: String,
    /// text, password, number, color, checkbox, select, textarea, or readonly.
    pub kind: &'static str,
    pub value: String,
    pub checked: bool,
    pub options: Vec<Choice>,
    pub hint: String,
    pub error: Option<String>,
    pub required: bool,
}

/// One choice of a select field.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Choice {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

impl Field {
    pub(crate) fn text(name: &'static str, label: impl Into<String>, value: impl Into<String>) -> Field {
        Field { name, label: label.into(), kind: "text", value: value.into(), ..Field::default() }
    }

    pub(crate) fn password(name: &'static str, label: impl Into<String>) -> Field {
        Field { name, label: label.into(), kind: "password", ..Field::default() }
    }

    pub(crate) fn checkbox(name: &'static str, label: impl Into<String>, checked: bool) -> Field {
        Field { name, label: label.into(), kind: "checkbox", checked, value: "on".into(), ..Field::default() }
    }

    /// A value shown but not sent (and a place for a refusal of what it shows).
    pub(crate) fn readonly(name: &'static str, label: impl Into<String>, value: impl Into<String>) -> Field {
        Field { name, label: label.into(), kind: "readonly", value: value.into(), ..Field::default() }
    }

    pub(crate) fn select(
        name: &'static str,
        label: impl Into<String>,
        options: Vec<(String, String)>,
        selected: &str,
    ) -> Field {
        let options =
            options.into_iter().map(|(value, label)| Choice { selected: value == selected, value, label }).collect();
        Field { name, label: label.into(), kind: "select", options, value: selected.to_string(), ..Field::default() }
    }

    /// What a checkbox sends when ticked (several boxes of one name each send their own value).
    pub(crate) fn sending(mut self, value: impl Into<String>) -> Field {
        self.value = value.into();
        self
    }

    pub(crate) fn kind(mut self, kind: &'static str) -> Field {
        self.kind = kind;
        self
    }

    pub(crate) fn hint(mut self, hint: impl Into<String>) -> Field {
        self.hint = hint.into();
        self
    }

    pub(crate) fn required(mut self) -> Field {
        self.required = true;
        self
    }
}

/// Puts a store refusal beside its field; a refusal of no known field goes to the form's own error.
pub(crate) fn place_error(fields: &mut [Field], form_error: &mut Option<String>, e: &oee_core::Error) {
    if let oee_core::Error::Field { field, message } = e
        && let Some(f) = fields.iter_mut().find(|f| f.name == *field)
    {
        f.error = Some(message.clone());
        return;
    }
    *form_error = Some(match e {
        oee_core::Error::Field { message, .. } => message.clone(),
        other => other.to_string(),
    });
}

/// A form page: fields, where it posts, and an error of the whole form.
#[derive(Debug, Serialize, Default)]
pub(crate) struct FormPage {
    pub heading: String,
    pub action: String,
    pub submit: &'static str,
    pub fields: Vec<Field>,
    pub error: Option<String>,
    /// Where "Cancel" leads.
    pub back: String,
    /// Extra read-only facts shown above the form (label, value).
    pub facts: Vec<(String, String)>,
    /// More forms below the main one that post elsewhere ("Set a new password", "Sign out everywhere").
    pub more: Vec<SubForm>,
}

/// A form below a page's main form: a heading (may be empty), where it posts, its fields (may be none: a
/// button) and its button.
#[derive(Debug, Serialize, Default)]
pub(crate) struct SubForm {
    pub heading: String,
    pub action: String,
    pub submit: String,
    pub fields: Vec<Field>,
}

/// A list page: columns, rows (each with a link to edit it), and a link to add one.
#[derive(Debug, Serialize, Default)]
pub(crate) struct ListPage {
    pub heading: String,
    pub new_link: Option<(String, String)>,
    pub columns: Vec<&'static str>,
    pub rows: Vec<ListRow>,
    pub empty: &'static str,
}

/// One row of a list page.
#[derive(Debug, Serialize)]
pub(crate) struct ListRow {
    pub cells: Vec<String>,
    pub link: Option<String>,
    /// Greyed out (inactive, revoked).
    pub muted: bool,
}

/// Answers a form that was refused: the form again, with 400 or 409 so scripts see the refusal too.
pub(crate) fn refused(mut r: Response, e: &oee_core::Error) -> Response {
    *r.status_mut() = match e {
        oee_core::Error::Conflict(_) => StatusCode::CONFLICT,
        oee_core::Error::NotFound(_) => StatusCode::NOT_FOUND,
        oee_core::Error::Database(_) | oee_core::Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        oee_core::Error::Field { message, .. } if message.contains("already") => StatusCode::CONFLICT,
        _ => StatusCode::BAD_REQUEST,
    };
    r
}

pub(crate) async fn stylesheet(headers: HeaderMap) -> Response {
    STYLESHEET.respond(&headers)
}

/// Renders page template `name` with `body` as a signed-out page whose CSRF token is `tok`, in the strict
/// mode of unit tests; panics unless it renders.
#[cfg(test)]
pub(crate) async fn render_for_test<T: Serialize>(name: &str, body: T) -> String {
    let page =
        Page { title: "T".into(), nav: "admin", user: None, csrf: "tok".into(), flash: None, version: "0", body };
    let r = Pages::new().render(name, &page);
    assert_eq!(r.status(), StatusCode::OK, "{name} renders");
    let bytes = axum::body::to_bytes(r.into_body(), usize::MAX).await.expect("the page's body");
    String::from_utf8(bytes.to_vec()).expect("a page is UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page<T: Serialize>(body: T) -> Page<T> {
        Page {
            title: "T".into(),
            nav: "admin",
            user: Some(PageUser { name: "ann".into(), role: Role::Admin, is_admin: true, is_supervisor: true }),
            csrf: "tok".into(),
            flash: Some("Saved <b>".into()),
            version: "0",
            body,
        }
    }

    async fn html(r: Response) -> String {
        assert_eq!(r.status(), StatusCode::OK);
        let bytes = axum::body::to_bytes(r.into_body(), usize::MAX).await.unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn every_template_renders_in_strict_mode() {
        let pages = Pages::new();
        for (name, _) in TEMPLATES {
            assert!(pages.hb.get_template(name).is_some(), "{name} compiled");
        }
        let mut fields = vec![
            Field::text("name", "Name", "Press <1>").required(),
            Field::checkbox("active", "Active", true),
            Field::select("role", "Role", vec![("viewer".into(), "Viewer".into())], "viewer"),
            Field::text("colour", "Colour", "#ff0000").kind("color"),
        ];
        let mut err = None;
        place_error(&mut fields, &mut err, &oee_core::Error::field("name", "taken"));
        let form = FormPage {
            heading: "Edit".into(),
            action: "/x".into(),
            submit: "Save",
            fields,
            error: err,
            back: "/admin-home".into(),
            facts: vec![("Topic".into(), "press-1".into())],
            more: vec![SubForm {
                heading: "More".into(),
                action: "/y".into(),
                submit: "Go".into(),
                fields: vec![Field::password("password", "P")],
            }],
        };
        let out = html(pages.render("form", &page(form))).await;
        assert!(out.contains("Press &lt;1&gt;"), "values are escaped");
        assert_eq!(out.matches(r#"name="csrf_token" value="tok""#).count(), 3, "every form has the token");
        assert!(out.contains("taken"), "the error is beside its field");
        assert!(out.contains(r#"name="csrf_token" value="tok""#));
        assert!(out.contains("Saved &lt;b&gt;"), "the flash is escaped");
        assert!(!out.contains("<script"), "no inline script");
        let list = ListPage {
            heading: "Users".into(),
            new_link: Some(("/admin/users/new".into(), "New user".into())),
            columns: vec!["Name"],
            rows: vec![ListRow { cells: vec!["ann".into()], link: Some("/admin/users/1".into()), muted: false }],
            empty: "none",
        };
        assert!(html(pages.render("list", &page(list))).await.contains("/admin/users/1"));
        let msg = Message { heading: "H".into(), text: "T".into() };
        html(pages.render("message", &page(msg))).await;
    }
}
