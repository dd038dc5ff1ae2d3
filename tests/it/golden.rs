//! Golden selections recorded from Kamailio 5.6.3 (`tests/fixtures/golden/*.golden`), checked
//! without Kamailio so a difference is readable on any machine.

use std::path::Path;

use super::diff_cases::{Answer, Case, StateOp, build};

struct Golden {
    list: String,
    states: Vec<StateOp>,
    cases: Vec<(Case, Answer)>,
}

fn parse(text: &str) -> Golden {
    let mut g = Golden {
        list: String::new(),
        states: Vec::new(),
        cases: Vec::new(),
    };
    let mut section = "";
    for line in text.lines() {
        if line.starts_with('#') && section.is_empty() {
            continue;
        }
        match line {
            "[list]" | "[states]" | "[cases]" => {
                section = line;
                continue;
            }
            _ => {}
        }
        match section {
            "[list]" => {
                g.list += line;
                g.list.push('\n');
            }
            "[states]" => {
                let mut p = line.split(' ');
                let st = p.next().unwrap().to_string();
                let set = p.next().unwrap().parse().unwrap();
                g.states.push((st, set, p.next().unwrap().to_string()));
            }
            "[cases]" => {
                let (c, a) = line.split_once("\t=> ").expect("case<TAB>=> answer");
                g.cases.push((Case::decode(c), Answer::decode(a)));
            }
            _ => panic!("line outside a section: {line}"),
        }
    }
    g
}

#[test]
fn golden_selections_match_kamailio() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/fixtures/golden exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "golden"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no golden files in {}", dir.display());
    let mut n = 0;
    for f in files {
        let g = parse(&std::fs::read_to_string(&f).unwrap());
        let snap = build(&g.list, &g.states, 1, false);
        for (case, want) in &g.cases {
            let got = case.sipdisp(&snap);
            assert_eq!(
                &got,
                want,
                "{}: case {}\nlist:\n{}states: {:?}",
                f.display(),
                case.encode(),
                g.list,
                g.states
            );
            n += 1;
        }
    }
    assert!(n >= 100, "only {n} golden cases");
}
