//! Exercises the Rust SDK for sdk/layers_test.go: on request headers it
//! reports what the SDK computed as request headers.

use wasmgate_sdk::{self as sdk, json, Action, HttpContext, MapType, MetricType, RootContext};

struct Root {
    greeting: String,
    metric: u32,
}

sdk::plugin!(|_| Box::new(Root { greeting: String::new(), metric: 0 }));

impl RootContext for Root {
    fn on_configure(&mut self, size: usize) -> bool {
        let raw = sdk::plugin_configuration(size).unwrap_or_default();
        self.greeting = json::string_field(&raw, "greeting").unwrap_or_default();
        self.metric = sdk::define_metric(MetricType::Counter, "probe_requests").unwrap_or(0);
        true
    }
    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Probe { greeting: self.greeting.clone(), metric: self.metric }))
    }
}

struct Probe {
    greeting: String,
    metric: u32,
}

fn report(name: &str, value: &str) {
    let _ = sdk::replace_header(MapType::HttpRequestHeaders, name, value);
}

impl HttpContext for Probe {
    fn on_request_headers(&mut self, _n: usize, _eos: bool) -> Action {
        let _ = sdk::increment_metric(self.metric, 1);
        report("x-greeting", &self.greeting);
        report("x-session", &sdk::session_id().unwrap_or_default());
        report("x-route", &sdk::route_name().unwrap_or_default());
        let n = sdk::get_headers(MapType::HttpRequestHeaders).map(|h| h.len()).unwrap_or(0);
        report("x-count", &n.to_string());
        let _ = sdk::remove_header(MapType::HttpRequestHeaders, "x-remove");
        let _ = sdk::add_header(MapType::HttpRequestHeaders, "x-added", "1");
        let missing = sdk::get_header(MapType::HttpRequestHeaders, "x-absent");
        report("x-absent", if let Ok(None) = missing { "none" } else { "some" });
        Action::Continue
    }
}
