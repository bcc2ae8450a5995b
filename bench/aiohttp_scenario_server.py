"""The scenario seed's approach, for the mock benchmark: one aiohttp process serving `/` from a
scenario list ([["BODY", STATUS, DELAY_MS], ...], set with POST /setscenario), `/requests` (arrival
times), and `/static`, a fixed answer (the most favourable case for it, compared with a static
expectation of inframock's mock). Usage: aiohttp_scenario_server.py PORT
"""
import asyncio
import json
import sys
import time

from aiohttp import web

scenario = []
requests = []


async def root(request):
    requests.append(time.time())
    if not scenario:
        return web.Response(text="no scenario", status=404)
    body, status, delay = scenario.pop(0)
    if delay:
        await asyncio.sleep(delay / 1000)
    return web.Response(text=body, status=status)


async def set_scenario(request):
    global scenario, requests
    scenario = json.loads(await request.text())
    requests = []
    return web.Response(text="OK")


async def list_requests(request):
    return web.Response(text=json.dumps(requests))


async def static(request):
    return web.json_response({"hello": "world"})


def main():
    app = web.Application()
    app.add_routes([web.route("*", "/", root), web.post("/setscenario", set_scenario),
                    web.get("/requests", list_requests), web.get("/static", static)])
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)


if __name__ == "__main__":
    main()
