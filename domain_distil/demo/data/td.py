"""Technical discussion: programming questions (with top-10 tags) and answers.

Code cues are language-neutral (identifiers and APIs are English on every Stack Overflow site);
the prose around them comes from the language's templates. A post shows its tags in one of three
ways, so a bag of words cannot read them off every time:

- explicit (40 %): the technology is named ("How do I ... in Python?");
- subtle (40 %): only an API name or a code snippet gives it away;
- generic (20 %): the question could be about anything (a subtle snippet appears half the time).

Co-tags follow real co-occurrence (jquery with javascript and html, android with java), 10 % of the
posts are about other technologies (SQL, CSS, Go, ...) and carry none of the ten tags, and 10 %
mention a technology they are not about ("I come from Java, ...").
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from domain_distil.demo.data.render import fill

TAGS = ("c#", "java", "php", "javascript", "android", "jquery", "python", "html", "c++", "ios")
# rough Stack Overflow shares among the ten
_WEIGHTS = (("javascript", 0.17), ("java", 0.15), ("c#", 0.13), ("php", 0.12), ("python", 0.12),
            ("android", 0.1), ("html", 0.06), ("jquery", 0.06), ("c++", 0.05), ("ios", 0.04))
# (co-tag, probability) given a primary tag
_CO_TAGS = {
    "jquery": (("javascript", 0.8), ("html", 0.35)),
    "android": (("java", 0.55),),
    "html": (("javascript", 0.3),),
    "php": (("html", 0.15), ("javascript", 0.1)),
    "javascript": (("html", 0.2), ("jquery", 0.1)),
    "ios": (),
}

NAMES = {"c#": ["C#", ".NET", "C#"], "java": ["Java"], "php": ["PHP"], "javascript": ["JavaScript", "JS"],
         "android": ["Android"], "jquery": ["jQuery"], "python": ["Python", "Python 3"], "html": ["HTML"],
         "c++": ["C++"], "ios": ["iOS", "Swift"],
         "sql": ["SQL", "MySQL"], "css": ["CSS"], "go": ["Go"], "ruby": ["Ruby"], "r": ["R"]}

API = {
    "c#": ["LINQ", "Entity Framework", "async Task", "WPF binding", "List<T>.Sort"],
    "java": ["ArrayList", "Spring Boot", "HashMap", "JDBC", "String.format"],
    "php": ["mysqli_query", "Laravel", "PDO", "session_start()", "array_map"],
    "javascript": ["Promise.all", "fetch", "addEventListener", "Array.prototype.map", "JSON.parse"],
    "android": ["RecyclerView", "SharedPreferences", "Intent", "Fragment", "AsyncTask"],
    "jquery": ["$.ajax", ".on('click')", "$(document).ready", ".each()", ".val()"],
    "python": ["pandas", "list comprehension", "requests.get", "json.loads", "numpy"],
    "html": ["<iframe>", "<form>", "<table>", "<select>", "<input type=\"file\">"],
    "c++": ["std::vector", "std::map", "unique_ptr", "template<class T>", "std::sort"],
    "ios": ["UITableView", "Core Data", "Auto Layout", "URLSession", "UINavigationController"],
    "sql": ["GROUP BY", "LEFT JOIN", "CREATE PROCEDURE"], "css": ["flexbox", "z-index", "a media query"],
    "go": ["goroutines", "the http package"], "ruby": ["Rails", "ActiveRecord"], "r": ["ggplot2", "data.frame"],
}

SNIPPETS = {
    "c#": ["var items = list.Where(x => x.Id > 0).ToList();", "public async Task<IActionResult> Index()",
           "Console.WriteLine(value);", "using System.Linq;", "if (string.IsNullOrEmpty(name)) return;"],
    "java": ["System.out.println(x);", "List<String> items = new ArrayList<>();",
             "public static void main(String[] args) {", "java.lang.NullPointerException at Main.run",
             "Map<String, Integer> map = new HashMap<>();"],
    "php": ["$name = $_POST['name'];", "echo $row['id'];", "$result = mysqli_query($conn, $sql);",
            "<?php foreach ($items as $item): ?>", "array_push($list, $value);"],
    "javascript": ["console.log(data);", "const ids = arr.map(x => x.id);",
                   "document.getElementById('btn').addEventListener('click', f);",
                   "fetch(url).then(r => r.json()).then(show);", "setTimeout(function () { run(); }, 1000);"],
    "android": ["recyclerView.setAdapter(adapter);", "startActivity(new Intent(this, Detail.class));",
                "getSharedPreferences(\"prefs\", MODE_PRIVATE)", "android:layout_width=\"match_parent\"",
                "Toast.makeText(this, \"Saved\", Toast.LENGTH_SHORT).show();"],
    "jquery": ["$('#save').click(function () { send(); });", "$.ajax({ url: url, type: 'POST', data: form });",
               "$(document).ready(function () { init(); });", "$('.row').each(function () { sum += 1; });"],
    "python": ["def load(path):", "for i in range(len(items)):", "import pandas as pd",
               "print(f\"{total:.2f}\")", "TypeError: 'NoneType' object is not subscriptable"],
    "html": ["<div class=\"container\">", "<input type=\"text\" name=\"email\">", "<table><tr><td>1</td></tr>",
             "<form method=\"post\" action=\"/save\">", "<select id=\"country\"></select>"],
    "c++": ["std::vector<int> v(n);", "#include <iostream>", "std::cout << x << std::endl;",
            "template <typename T> T max(T a, T b)", "Segmentation fault (core dumped)"],
    "ios": ["override func viewDidLoad() {", "DispatchQueue.main.async { self.tableView.reloadData() }",
            "let cell = tableView.dequeueReusableCell(withIdentifier: \"cell\")", "Info.plist", "@IBOutlet weak var label: UILabel!"],
    "sql": ["SELECT name, COUNT(*) FROM orders GROUP BY name;", "ALTER TABLE users ADD email VARCHAR(100);"],
    "css": [".box { display: flex; align-items: center; }", "@media (max-width: 600px) { ... }"],
    "go": ["func main() {", "if err != nil { return err }"], "ruby": ["puts user.name", "def index; end"],
    "r": ["df <- read.csv(\"data.csv\")", "summary(model)"],
}
OTHER = ("sql", "css", "go", "ruby", "r")


def _weighted_tag(rng: random.Random) -> str:
    r, acc = rng.random(), 0.0
    for tag, weight in _WEIGHTS:
        acc += weight
        if r < acc:
            return tag
    return _WEIGHTS[-1][0]


def _slots(res: Mapping[str, Any], tech: str) -> dict[str, list[str]]:
    slots = {k: v for k, v in res.items() if isinstance(v, list)}
    slots.update(tech=NAMES[tech], api=API[tech], task_cap=[t[:1].upper() + t[1:] for t in res["task"]])
    return slots


def post(res: Mapping[str, Any], rng: random.Random, lang: str) -> tuple[str, list[str]]:
    """One question (title + body) and its true tags."""
    if rng.random() < 0.1:
        subject, tags = rng.choice(OTHER), []
    else:
        subject = _weighted_tag(rng)
        tags = [subject] + [co for co, p in _CO_TAGS.get(subject, ()) if rng.random() < p]
    slots = _slots(res, subject)
    mode = rng.random()
    if mode < 0.4:
        title = fill(rng.choice(res["ask"]), slots, rng)
        snippet = rng.random() < 0.5
    elif mode < 0.8:
        frames = [f for f in res["ask"] if "{tech}" not in f]
        title = fill(rng.choice(frames), slots, rng)
        snippet = rng.random() < 0.6
    else:
        title = fill(rng.choice(res["generic"]), slots, rng)
        snippet = rng.random() < 0.5
    if lang != "jap" and title[-1:].isalnum():
        title += "."
    parts = [title]
    if rng.random() < 0.1:
        other = rng.choice([t for t in (*TAGS, *OTHER) if t not in tags and t != subject])
        parts.append(fill(rng.choice(res["mislead"]), {"other": NAMES[other]}, rng))
    if snippet:
        parts += [fill(rng.choice(res["body"]), slots, rng), rng.choice(SNIPPETS[subject])]
    for co in tags[1:]:
        if rng.random() < 0.6:
            parts.append(rng.choice(SNIPPETS[co]))
    parts.append(rng.choice(res["end"]))
    return " ".join(p for p in parts if p), sorted(tags)


def answer(res: Mapping[str, Any], rng: random.Random, lang: str) -> str:
    subject = rng.choice((*TAGS, *OTHER))
    slots = _slots(res, subject)
    slots["snippet"] = SNIPPETS[subject]
    return fill(rng.choice(res["answer"]), slots, rng)


def thread(res: Mapping[str, Any], rng: random.Random, lang: str, exclude: set[str]) -> str:
    """A question with one to three answers as one corpus document; the question is not a task post."""
    for _ in range(20):
        question, _ = post(res, rng, lang)
        if question not in exclude:
            break
    else:
        question = ""  # every draw was a task post: keep only the answers
    return " ".join([q for q in [question] if q] + [answer(res, rng, lang) for _ in range(rng.randint(1, 3))])


def question(res: Mapping[str, Any], rng: random.Random, lang: str, exclude: set[str]) -> str:
    """One question post as one corpus document: the task's own text kind (what ``td_tags`` tags),
    never a task post."""
    for _ in range(20):
        text, _ = post(res, rng, lang)
        if text not in exclude:
            return text
    return ""
