//! `harness phases` on every model:mode of the standard matrix: each trace
//! must show the wait where the model's header says it is (needs strace).

use harness::phases::{agrees, header_says, trace};
use harness::spec::row;
use harness::spec::STANDARD_MODELS;

#[test]
fn every_model_waits_where_its_header_says() {
    let mut disagreements = Vec::new();
    for model in STANDARD_MODELS {
        let (spec, flags) = row(model).unwrap();
        let says = header_says(&spec).unwrap_or_else(|| panic!("no header statement for {model}"));
        let traced = trace(&spec, &flags).unwrap_or_else(|e| panic!("harness phases {model}: {e}"));
        assert!(traced.totals.calls > 0, "{model}: no call traced");
        if let Err(why) = agrees(&says, &traced.calls) {
            disagreements.push(format!(
                "{model}: {why}\n{}",
                harness::phases::render(&traced)
            ));
        }
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}
