//! The example interceptor in Rust (see examples/README.md): adds a
//! response header, checks x-api-key, and rewrites SSE events named
//! "shout" and "drop".

use std::rc::Rc;
use wasmgate_sdk::{self as sdk, json, sse, Action, HttpContext, LogLevel, MapType, RootContext};

#[derive(Default)]
struct Config {
    header: String,
    value: String,
    api_key: String,
}

#[derive(Default)]
struct Root {
    cfg: Rc<Config>,
}

sdk::plugin!(|_| Box::new(Root::default()));

impl RootContext for Root {
    fn on_configure(&mut self, size: usize) -> bool {
        let raw = match sdk::plugin_configuration(size) {
            Ok(raw) => raw,
            Err(e) => {
                sdk::log(LogLevel::Error, &format!("read configuration: {:?}", e));
                return false;
            }
        };
        let get = |k| json::string_field(&raw, k).unwrap_or_default();
        self.cfg = Rc::new(Config { header: get("header").to_ascii_lowercase(), value: get("value"), api_key: get("api_key") });
        true
    }

    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream { cfg: self.cfg.clone(), sse: false }))
    }
}

struct Stream {
    cfg: Rc<Config>,
    sse: bool,
}

const UNAUTHORIZED: &[u8] = br#"{"error":"invalid or missing x-api-key"}"#;

impl HttpContext for Stream {
    fn on_request_headers(&mut self, _n: usize, _eos: bool) -> Action {
        if self.cfg.api_key.is_empty() {
            return Action::Continue;
        }
        if let Ok(Some(key)) = sdk::get_header(MapType::HttpRequestHeaders, "x-api-key") {
            if key == self.cfg.api_key.as_bytes() {
                return Action::Continue;
            }
        }
        let mut headers = vec![("content-type", "application/json")];
        if !self.cfg.header.is_empty() {
            headers.push((self.cfg.header.as_str(), self.cfg.value.as_str()));
        }
        let _ = sdk::send_local_response(401, &headers, UNAUTHORIZED, "api_key_mismatch");
        Action::Pause
    }

    fn on_response_headers(&mut self, _n: usize, _eos: bool) -> Action {
        if !self.cfg.header.is_empty() {
            let _ = sdk::replace_header(MapType::HttpResponseHeaders, &self.cfg.header, &self.cfg.value);
        }
        if let Ok(Some(ct)) = sdk::get_header(MapType::HttpResponseHeaders, "content-type") {
            self.sse = ct.starts_with(b"text/event-stream");
        }
        Action::Continue
    }

    fn on_response_body(&mut self, size: usize, _eos: bool) -> Action {
        if !self.sse || size == 0 {
            return Action::Continue;
        }
        let mut ev = match sdk::response_body(size) {
            Ok(b) => sse::Event::parse(b),
            Err(_) => return Action::Continue,
        };
        match ev.name() {
            b"drop" => {
                let _ = sdk::set_response_body(size, &[]);
            }
            b"shout" => {
                ev.map_data(|v| v.make_ascii_uppercase());
                let _ = sdk::set_response_body(size, ev.bytes());
            }
            _ => {}
        }
        Action::Continue
    }
}
