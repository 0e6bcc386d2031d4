// Enketo's openrosa-xpath-evaluator as a long-lived process: one JSON request per line on
// stdin, one JSON answer per line on stdout. The differential test of hdhub's expression
// engine (services/registrations/tests/conformance) drives it.
//
// Request: {"instance": "<data>...</data>", "context": "/data/x" | null,
//           "tz": "UTC" | "Europe/Brussels", "now": epoch milliseconds | null,
//           "expressions": ["/data/x + 1", ...]}
// Answer:  {"results": [{"t": "number" | "string" | "boolean" | "date" | "nodeset" | "error",
//                        "v": ...}, ...]}
// Numbers that JSON cannot hold (NaN, Infinity) travel as strings.
'use strict';

const readline = require('node:readline');
const { JSDOM } = require('jsdom');

const { window } = new JSDOM('');
// The evaluator expects a browser: the DOM classes and a native XPath evaluator.
for (const name of ['Node', 'XPathResult', 'XPathEvaluator', 'Element', 'Attr', 'Document', 'Text']) {
    global[name] = window[name];
}

// Browsers default XPathExpression.evaluate()'s result type to ANY_TYPE; jsdom refuses a
// missing one, and the evaluator leaves it out for a path after a predicate (rep[2]/x).
const probe = new window.DOMParser().parseFromString('<x/>', 'text/xml');
const XPathExpressionClass = Object.getPrototypeOf(probe.createExpression('.', null));
const jsdomEvaluate = XPathExpressionClass.evaluate;
XPathExpressionClass.evaluate = function evaluate(node, type, result) {
    return jsdomEvaluate.call(this, node, type === undefined ? XPathResult.ANY_TYPE : type, result ?? null);
};

// A fixed clock when a request gives one: today() and now() read `new Date()`.
const SystemDate = Date;
let fixedNow = null;
class ClockDate extends SystemDate {
    constructor(...args) {
        if (args.length === 0 && fixedNow !== null) super(fixedNow);
        else super(...args);
    }

    static now() {
        return fixedNow === null ? SystemDate.now() : fixedNow;
    }
}
global.Date = ClockDate;

const evaluator = require('openrosa-xpath-evaluator')();

const parser = new window.DOMParser();

function number(v) {
    return Number.isFinite(v) ? v : String(v);
}

function result(r) {
    switch (r.resultType) {
        case XPathResult.NUMBER_TYPE:
            return { t: 'number', v: number(r.numberValue) };
        case XPathResult.STRING_TYPE:
            return { t: 'string', v: r.stringValue };
        case XPathResult.BOOLEAN_TYPE:
            return { t: 'boolean', v: r.booleanValue };
        case XPathResult.ANY_TYPE:
            // Only dates come back untyped (the evaluator's own `date` type), as text.
            return { t: 'date', v: r.stringValue };
        default: {
            const texts = [];
            for (let i = 0; i < r.snapshotLength; ++i) texts.push(r.snapshotItem(i).textContent);
            return { t: 'nodeset', v: texts };
        }
    }
}

function answer(request) {
    process.env.TZ = request.tz || 'UTC';
    fixedNow = request.now === undefined ? null : request.now;
    const doc = parser.parseFromString(request.instance || '<data/>', 'text/xml');
    let context = doc;
    if (request.context) {
        context = doc.evaluate(request.context, doc, null, XPathResult.FIRST_ORDERED_NODE_TYPE, null)
            .singleNodeValue;
    }
    const results = request.expressions.map((expression) => {
        try {
            let r = evaluator.evaluate(expression, context, null, XPathResult.ANY_TYPE, null);
            if (r.resultType >= XPathResult.UNORDERED_NODE_ITERATOR_TYPE) {
                r = evaluator.evaluate(expression, context, null, XPathResult.ORDERED_NODE_SNAPSHOT_TYPE, null);
            }
            return result(r);
        } catch (error) {
            return { t: 'error', v: String(error.message).slice(0, 200) };
        }
    });
    return { results };
}

const lines = readline.createInterface({ input: process.stdin, terminal: false });
lines.on('line', (line) => {
    let reply;
    try {
        reply = answer(JSON.parse(line));
    } catch (error) {
        reply = { error: String(error.message).slice(0, 500) };
    }
    process.stdout.write(`${JSON.stringify(reply)}\n`);
});
