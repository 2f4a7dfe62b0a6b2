"""The cross-border settlement demo, against a running devnet (``ledger net up``).

    python scripts/demo_crossborder.py [--dir .devnet]

1. A Shenzhen merchant (merchant-001) is paid through three channels (WeChat
   Pay, Alipay, UnionPay) by its aggregator (alipay-agg), and settled T+1:
   channel fees to each channel, the aggregator's commission from its tiered
   schedule, the merchant's net. (The devnet's day is 20 s, so "tomorrow"
   comes soon; a production chain's day is 24 h.)
2. The merchant pays a US supplier exactly 250.00 USD through an FX quote of
   the Hong Kong FX provider (fx-hk): CNY to fx-hk, USD to the supplier, both
   legs or neither.
3. An escrowed order: alipay-agg locks 800.00 CNY for merchant-002, and
   releases it when the goods arrive.
4. A netting cycle among three banks settles four obligations by moving only
   each bank's net position.
5. Balances are read back (signed reads as the auditor), one payment's
   inclusion is proven against a certified header, and every node's chain is
   verified and replayed.

Every transaction goes through the HTTP API with ``node.client.Client``.
Ids carry a run number, so the demo can run again on the same devnet.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from audit.run import audit_sources, open_node  # noqa: E402
from ledger.amounts import format_amount  # noqa: E402
from ledger.genesis import Genesis  # noqa: E402
from ledger.keyfile import load_key  # noqa: E402
from node import devnet  # noqa: E402
from node.cli_tx import describe_event  # noqa: E402
from node.client import ApiError, Client, TxStatus  # noqa: E402

EXPONENTS = {"CNY": 2, "JPY": 0, "USD": 2}
BANKS = ("bank-cn", "bank-jp", "bank-us")


def money(minor: int, currency: str) -> str:
    return format_amount(minor, EXPONENTS[currency], currency)


class Demo:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.urls = [node.api for node in devnet.load_devnet(directory)]
        self.clients: dict[str, Client] = {}
        self.run = time.strftime("%H%M%S")

    def client(self, member: str) -> Client:
        if member not in self.clients:
            self.clients[member] = Client.from_devnet(self.directory, member)
        return self.clients[member]

    def call(self, member: str, contract: str, method: str, expect_ok: bool = True, **args: Any) -> TxStatus:
        status = self.client(member).call(contract, method, args, wait=True)
        if expect_ok and status.status != "committed":
            raise SystemExit(f"{member} {contract}.{method} did not commit: {status.status} {status.code}")
        return status

    def show(self, status: TxStatus, indent: str = "    ") -> None:
        for event in status.events:
            print(indent + describe_event(event.name, event.data, EXPONENTS))

    def height(self) -> int:
        return int(self.client("auditor").status()["height"])

    def balances(self, *members: str) -> None:
        auditor = self.client("auditor")
        for member in members:
            info = auditor.get_account(member)
            shown = ", ".join(info.display[c] for c in sorted(info.display)) or "nothing"
            print(f"    {member:<14} {shown}")

    def close(self) -> None:
        for client in self.clients.values():
            client.close()


def fund(demo: Demo) -> None:
    print("== funding: the banks issue money on the ledger")
    for issuer, currency, to, amount in [("bank-cn", "CNY", "alipay-agg", 50_000_000),
                                         ("bank-us", "USD", "fx-hk", 10_000_000),
                                         ("bank-cn", "CNY", "bank-cn", 200_000_000),
                                         ("bank-cn", "CNY", "bank-jp", 200_000_000),
                                         ("bank-cn", "CNY", "bank-us", 200_000_000)]:
        demo.call(issuer, "accounts", "issue", currency=currency, to=to, amount_minor=amount)
        print(f"    {issuer} issued {money(amount, currency)} to {to}")


def merchant_settlement(demo: Demo) -> None:
    print("== 1. a Shenzhen merchant paid through three channels, settled T+1")
    terms = demo.call("alipay-agg", "merchant", "register_merchant", expect_ok=False, merchant="merchant-001",
                      settlement_cycle=1)
    if terms.status != "committed" and terms.code != "merchant_exists":  # exists: an earlier run registered it
        raise SystemExit(f"register_merchant failed: {terms.code}")
    for channel, amount in [("wechat", 328_000), ("alipay", 156_050), ("unionpay", 89_990)]:
        demo.call("alipay-agg", "merchant", "record_payment", merchant="merchant-001", channel=channel,
                  currency="CNY", amount_minor=amount, payment_ref=f"sz-{demo.run}-{channel}")
        print(f"    recorded {money(amount, 'CNY'):>14} through {channel}")
    early = demo.call("alipay-agg", "merchant", "settle", expect_ok=False, merchant="merchant-001", currency="CNY")
    print(f"    settling today is refused: {early.code} (T+1)")
    while True:  # the next devnet day (20 s): retry until the batch is due
        time.sleep(2)
        status = demo.call("alipay-agg", "merchant", "settle", expect_ok=False, merchant="merchant-001",
                           currency="CNY")
        if status.status == "committed":
            break
        if status.code != "settlement_not_due":
            raise SystemExit(f"settle failed: {status.code}")
    print(f"    settled the next day at height {status.height}:")
    for event in status.events:
        if event.name == "batch_settled":
            data = event.data
            print(f"      gross {money(data['gross_minor'], 'CNY')} from {data['payment_count']} payments")
            for channel, fee in sorted(data["channel_fees"].items()):
                print(f"      - {channel:<9} fee {money(fee, 'CNY'):>12}")
            print(f"      - alipay-agg commission {money(data['commission_minor'], 'CNY')} "
                  f"({data['commission_bps'] / 100:.2f} % tier)")
            print(f"      = merchant-001 net {money(data['net_minor'], 'CNY')}  (parts sum exactly to the gross)")


def cross_border(demo: Demo) -> TxStatus:
    print("== 2. the merchant pays a US supplier 250.00 USD through fx-hk's quote (payment versus payment)")
    quote_id = f"cnyusd{demo.run}"
    until = demo.height() + 600
    demo.call("fx-hk", "fx", "post_quote", quote_id=quote_id, source_currency="CNY", target_currency="USD",
              rate_num=10_000, rate_den=71_234, spread_bps=25, fee_minor=500, valid_until_height=until,
              size_target_minor=10_000_000)
    print(f"    fx-hk quotes 7.1234 CNY per USD, spread 0.25 %, fee 5.00 CNY, valid to height {until}")
    status = demo.call("merchant-001", "fx", "pay", provider="fx-hk", quote_id=quote_id, to="supplier-us",
                       source_currency="CNY", target_currency="USD", target_minor=25_000, max_source_minor=190_000)
    print(f"    paid at height {status.height}, both legs in one transaction:")
    for event in status.events:
        if event.name == "fx_paid":
            data = event.data
            print(f"      merchant-001 -> fx-hk       {money(data['source_minor'], 'CNY'):>14}  (converted "
                  f"{money(data['converted_minor'], 'CNY')} + fee {money(data['fee_minor'], 'CNY')} + rounding "
                  f"remainder {money(data['remainder_minor'], 'CNY')})")
            print(f"      fx-hk -> supplier-us        {money(data['target_minor'], 'USD'):>14}")
    return status


def escrowed_order(demo: Demo) -> None:
    print("== 3. an escrowed order: 800.00 CNY locked for merchant-002, released on delivery")
    escrow_id = f"order-{demo.run}"
    timeout = demo.height() + 300
    locked = demo.call("alipay-agg", "escrow", "lock", escrow_id=escrow_id, to="merchant-002", currency="CNY",
                       amount_minor=80_000, timeout_height=timeout)
    print(f"    locked at height {locked.height} (refunded automatically after height {timeout} if not released)")
    posted = demo.call("alipay-agg", "escrow", "post", payer="alipay-agg", escrow_id=escrow_id)
    print(f"    released at height {posted.height}:")
    demo.show(posted, indent="      ")


def netting(demo: Demo) -> None:
    print("== 4. a netting cycle among three banks")
    cycle_id = f"banks-{demo.run}"
    demo.call("bank-cn", "netting", "open_cycle", cycle_id=cycle_id, currency="CNY", participants=list(BANKS))
    obligations = [("bank-cn", "bank-jp", 120_000_000), ("bank-jp", "bank-us", 70_000_000),
                   ("bank-us", "bank-cn", 90_000_000), ("bank-cn", "bank-us", 15_000_000)]
    for debtor, creditor, amount in obligations:
        demo.call(debtor, "netting", "add_obligation", cycle_id=cycle_id, to=creditor, amount_minor=amount)
        print(f"    {debtor} owes {creditor} {money(amount, 'CNY'):>16}")
    settled = demo.call("bank-cn", "netting", "settle", cycle_id=cycle_id)
    gross = sum(amount for _d, _c, amount in obligations)
    print(f"    settled at height {settled.height}: {money(gross, 'CNY')} of obligations, by moving only the nets:")
    for event in settled.events:
        if event.name == "cycle_settled":
            for bank, net in sorted(event.data["positions"].items()):
                side = "receives" if net > 0 else "pays" if net < 0 else "neither pays nor receives"
                print(f"      {bank:<8} {side} {money(abs(net), 'CNY') if net else ''}")
            print(f"      moved {money(event.data['net_minor'], 'CNY')} instead of {money(gross, 'CNY')} gross")


def verify(demo: Demo, payment: TxStatus) -> int:
    print("== 5. balances (signed reads as the auditor)")
    demo.balances("merchant-001", "alipay-agg", "wechat", "alipay", "unionpay", "supplier-us", "fx-hk",
                  "merchant-002", *BANKS)
    genesis = Genesis.load(demo.directory / "genesis.json")
    (demo.directory / "demo_fx_tx").write_text(payment.tx_id.hex() + "\n")  # for `ledger audit --tx` in demo.sh
    inclusion = demo.client("merchant-001").get_tx_proof(payment.tx_id)
    header = inclusion.verify(genesis.chain_id, genesis.validator_set)
    print(f"== the FX payment is leaf {inclusion.log_index} of the log in block {header.height}, whose certificate "
          "carries > 2/3 of the validators' power (checked against the genesis only)")
    print("== auditing every node through its API as the auditor: certificates, signatures, roots, replay, forks")
    member, key = load_key(demo.directory / "keys" / "auditor.json")
    nodes = devnet.load_devnet(demo.directory)
    report = audit_sources(genesis, [(node.name, "node", open_node(node.api, member, key)) for node in nodes],
                           anchor=f"the genesis in {demo.directory / 'genesis.json'}")
    for line in report.describe():
        print(f"    {line}")
    return report.exit_code


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=Path(".devnet"), help="the devnet directory (ledger net up)")
    args = parser.parse_args()
    if not (args.dir / devnet.DEVNET_FILE).exists():
        print(f"error: no devnet in {args.dir}: start one with `ledger net up --dir {args.dir}`", file=sys.stderr)
        return 2
    demo = Demo(args.dir)
    try:
        fund(demo)
        merchant_settlement(demo)
        payment = cross_border(demo)
        escrowed_order(demo)
        netting(demo)
        return verify(demo, payment)
    except ApiError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2 if error.status == 0 else 1
    finally:
        demo.close()


if __name__ == "__main__":
    sys.exit(main())
