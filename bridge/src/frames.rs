//! The text of the server → client stream frames of docs/http-api.md, assembled by concatenating
//! JSON that already exists: each state's JSON is made once in [`Prepared`] and shared by every
//! client and frame, the subscription id once per subscription. Nothing here serializes a state.

use std::sync::Arc;

use crate::fleet::Prepared;

/// `{"type":"update","sub":SUB,"vehicle":STATE}` in one exact-size allocation (this runs per
/// client per update).
pub fn update(sub_json: &str, state_json: &str) -> String {
    [
        r#"{"type":"update","sub":"#,
        sub_json,
        r#","vehicle":"#,
        state_json,
        "}",
    ]
    .concat()
}

/// `{"type":"event","sub":SUB,"event":EVENT}`.
pub fn event(sub_json: &str, event_json: &str) -> String {
    [
        r#"{"type":"event","sub":"#,
        sub_json,
        r#","event":"#,
        event_json,
        "}",
    ]
    .concat()
}

/// `{"type":KIND,"sub":SUB,"vehicles":[STATE,...]}`: a `snapshot` or a batched `updates` frame.
pub fn states<'a>(
    kind: &str,
    sub_json: &str,
    states: impl Iterator<Item = &'a Arc<Prepared>> + Clone,
) -> String {
    let size: usize = states.clone().map(|p| p.json().len() + 1).sum();
    let mut text = String::with_capacity(kind.len() + sub_json.len() + 32 + size);
    text.push_str(r#"{"type":""#);
    text.push_str(kind);
    text.push_str(r#"","sub":"#);
    text.push_str(sub_json);
    text.push_str(r#","vehicles":["#);
    for (i, p) in states.enumerate() {
        if i > 0 {
            text.push(',');
        }
        text.push_str(p.json());
    }
    text.push_str("]}");
    text
}
