"""`tunelab hotel ...`: build the database, search it, synthesize and import dialogs."""

from __future__ import annotations

import argparse
import json

from tunelab.cli.args import POSITIVE, number


def add_hotel_parser(sub) -> None:
    h = sub.add_parser("hotel", help="hotel domain: database, search tool, dialog data")
    hs = h.add_subparsers(dest="hotel_command", required=True)

    b = hs.add_parser("build-db", help="generate a Beijing hotel database (or import CrossWOZ's)")
    b.add_argument("--out", default="data/hotel/hotels.db")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--n", type=number(int, ge=1, le=1500), default=1000, help="number of hotels (1-1500)")
    b.add_argument("--from-crosswoz", metavar="HOTEL_DB_JSON", help="import CrossWOZ hotel_db.json instead")
    b.set_defaults(fn=cmd_build_db)

    s = hs.add_parser("search", help="run search_hotels and print the rows")
    s.add_argument("--db", default="data/hotel/hotels.db")
    s.add_argument("--name")
    s.add_argument("--type")
    s.add_argument("--facilities", nargs="*", default=None)
    s.add_argument("--price-lower", type=number(float, ge=0))
    s.add_argument("--price-upper", type=number(float, ge=0))
    s.add_argument("--rating-lower", type=number(float, ge=0, le=5))
    s.add_argument("--rating-upper", type=number(float, ge=0, le=5))
    s.add_argument("--limit", type=POSITIVE, default=5)
    s.set_defaults(fn=cmd_search)

    y = hs.add_parser("synth", help="synthesize train/dev/test dialogs from the database")
    y.add_argument("--db", default="data/hotel/hotels.db")
    y.add_argument("--n", type=POSITIVE, default=3000)
    y.add_argument("--seed", type=int, default=0)
    y.add_argument("--out", default="data/hotel")
    y.set_defaults(fn=cmd_synth)

    p = hs.add_parser("prefs", help="preference pairs: the correct search or reply chosen, a realistic mistake "
                      "rejected (dropped facility, price bounds swapped, stale records, unknown hotel, wrong phone/price)")
    p.add_argument("--db", default="data/hotel/hotels.db")
    p.add_argument("--n", type=POSITIVE, default=1000, help="pairs to write")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="data/hotel/prefs.jsonl")
    p.set_defaults(fn=cmd_prefs)

    c = hs.add_parser("import-crosswoz", help="convert the hotel part of CrossWOZ dialogs (.json or .zip)")
    c.add_argument("file")
    c.add_argument("--db", default=None, help="hotel DB for the search records, for real dialogs the one built by "
                   "`build-db --from-crosswoz hotel_db.json` (without it: empty records)")
    c.add_argument("--out", default="data/hotel/crosswoz.jsonl")
    c.add_argument("--splits", metavar="DIR", help="write DIR/{train,dev,test}.jsonl split 8:1:1 by dialog "
                   "instead of --out")
    c.set_defaults(fn=cmd_import)


def cmd_build_db(args: argparse.Namespace, overrides) -> int:
    from tunelab.domains.hotel import build_db, import_crosswoz
    from tunelab.utils.safety import check_output

    check_output(args.out, [args.from_crosswoz], "--out")
    if args.from_crosswoz:
        report = import_crosswoz(args.from_crosswoz, args.out)
    else:
        report = build_db(args.out, seed=args.seed, n=args.n)
    print(json.dumps(report, ensure_ascii=False, indent=1, default=str))
    return 0


def cmd_search(args: argparse.Namespace, overrides) -> int:
    from tunelab.domains.hotel import connect, search_hotels

    keys = {"name": args.name, "type": args.type, "facilities": args.facilities,
            "price_range_lower": args.price_lower, "price_range_upper": args.price_upper,
            "rating_range_lower": args.rating_lower, "rating_range_upper": args.rating_upper}
    query = {k: v for k, v in keys.items() if v is not None}
    result = search_hotels(connect(args.db), query, limit=args.limit)
    if not result["ok"]:
        print(f"tunelab: error: {result['error']}")
        return 2
    print(f"search_hotels {json.dumps(query, ensure_ascii=False)}: {len(result['records'])} rows")
    for r in result["records"]:
        price = f"{r['price']}元" if r.get("price") is not None else "价格未知"
        print(f"- {r['name']} | {r['type']} | {price} | {r['rating']}分 | {r['phone']} | {r['address']}")
        print(f"  {r['subway']}; {'、'.join(r['facilities'])}")
    return 0


def cmd_synth(args: argparse.Namespace, overrides) -> int:
    from tunelab.domains import get_domain
    from tunelab.domains.data import synthesize_splits

    report = synthesize_splits(get_domain("hotel"), args.n, args.seed, args.db, args.out)
    print(json.dumps(report, ensure_ascii=False, indent=1, default=str))
    return 0


def cmd_import(args: argparse.Namespace, overrides) -> int:
    from tunelab.domains.data import SPLIT_FILES, write_splits
    from tunelab.domains.hotel import import_dialogs
    from tunelab.utils.io import write_jsonl
    from tunelab.utils.safety import check_output, prepare_out_dir

    inputs = [p for p in (args.file, args.db) if p]
    if args.splits:  # before importing: a bad DIR fails at once
        prepare_out_dir(args.splits, SPLIT_FILES, inputs, "--splits")
    else:
        check_output(args.out, inputs, "--out")
    dialogs, report = import_dialogs(args.file, args.db)
    if args.splits:
        report["splits"] = write_splits(dialogs, args.splits, inputs=inputs)
    else:
        write_jsonl(args.out, dialogs)
    print(json.dumps({**report, "out": args.splits or args.out}, ensure_ascii=False, indent=1, default=str))
    return 0


def cmd_prefs(args: argparse.Namespace, overrides) -> int:
    from tunelab.domains.hotel.prefs import preference_pairs
    from tunelab.utils.io import write_jsonl
    from tunelab.utils.safety import check_output

    check_output(args.out, [args.db], "--out")
    pairs, report = preference_pairs(args.db, args.n, args.seed)
    write_jsonl(args.out, pairs)
    print(json.dumps({**report, "out": args.out}, ensure_ascii=False, indent=1))
    return 0
