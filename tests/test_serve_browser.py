#!/usr/bin/python3
"""test_serve_browser.py: `sam2amg serve` in a real browser (headless
Chromium from Debian driven by Selenium with Debian's chromium-driver).

On a database made by `sam2amg run` (micro model, the fixture photos and a
corrupt file): the grid shows one card per image; the image with the most
masks opens and draws all of them; moving the predicted-IoU slider with the
keyboard leaves exactly the masks at or above the threshold (counted here
from the JSON the page reads, not from the page); hovering a pixel of the
smallest drawn mask (found here by decoding its RLE in Python) shows that
mask's area and IoU in the tooltip; a click selects it; the right arrow key
moves to the next image; the Failures link leads to the failed image and
its reason, as stored. Screenshots go to $BUILD/test-out/serve/.

Needs python3-selenium, chromium and chromium-driver (tests/setup.sh). Run
by the pyenv python3 of run.sh, it re-executes itself under /usr/bin/python3.
If Chromium cannot start it prints a skip line and counts nothing, unless
$CI is set, where that is a failure.
"""
import json
import os
import shutil
import sys
import tempfile
import urllib.request

if __name__ == "__main__":
    try:
        import selenium  # noqa: F401
    except ImportError:
        if os.path.exists("/usr/bin/python3") and sys.executable != "/usr/bin/python3" \
                and not os.environ.get("SERVE_TEST_REEXEC"):
            os.environ["SERVE_TEST_REEXEC"] = "1"
            os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import serve_util as su  # noqa: E402


def rle_counts(s):
    """run lengths of a compressed COCO RLE string (our own decoder, as in
    tests/test_rle_pycocotools.py's reading of the format)"""
    cnts, p = [], 0
    while p < len(s):
        x = k = 0
        more = True
        while more:
            c = ord(s[p]) - 48
            p += 1
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(cnts) > 2:
            x += cnts[-2]
        cnts.append(x)
    return cnts


def mask_pixels(m, h):
    """the (x, y) pixels of mask record m, column-major order"""
    out, pos = [], 0
    for i, c in enumerate(rle_counts(m["counts"])):
        if i & 1:
            out.extend((p // h, p % h) for p in range(pos, pos + c))
        pos += c
    return out


def main():
    rep = su.Report()
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.by import By
        from selenium.webdriver.common.keys import Keys
        from selenium.webdriver.support.ui import WebDriverWait
    except ImportError as e:
        if os.environ.get("CI"):
            rep.check(False, "selenium importable", str(e))
            return rep.finish()
        print("skip - python3-selenium missing (%s): run tests/setup.sh" % e)
        return rep.finish()

    out = os.path.join(su.ROOT, su.BUILD, "test-out", "serve")
    os.makedirs(out, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="test_serve_browser.")
    db = su.make_db(tmp)
    n_images = su.query(db, "SELECT count(*) FROM images")[0][0]
    failed = su.query(db, "SELECT id, error FROM images WHERE status = 'failed'")
    rep.check(n_images == 8 and len(failed) == 1, "database: 8 images, 1 failed",
              "%d images, %d failed" % (n_images, len(failed)))

    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1280,900", "--force-device-scale-factor=1"):
        opts.add_argument(a)
    try:
        drv = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    except Exception as e:  # noqa: BLE001 - any start failure is the skip reason
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if os.environ.get("CI"):
            rep.check(False, "chromium starts", reason)
            return rep.finish()
        print("skip - chromium cannot start: " + reason)
        return rep.finish()

    srv = su.Server(db)
    try:
        drv.set_page_load_timeout(20)
        wait = WebDriverWait(drv, 10)

        # grid: one card per image
        drv.get(srv.url + "/images")
        cards = drv.find_elements(By.CSS_SELECTOR, "#grid .card")
        rep.check(len(cards) == n_images, "grid: one card per image",
                  "%d cards, %d images" % (len(cards), n_images))
        wait.until(lambda d: d.execute_script(
            "return [...document.querySelectorAll('.card img')].every(i => i.complete && i.naturalWidth > 0)"))
        drv.save_screenshot(os.path.join(out, "grid.png"))

        # the image with the most masks
        best = max(cards, key=lambda c: int(c.get_attribute("data-masks")))
        iid = int(best.get_attribute("data-id"))
        best.click()
        wait.until(lambda d: d.execute_script(
            "const p = document.getElementById('image-page'); return p && p.dataset.ready === '1'"))
        rep.check(drv.current_url.endswith("/image/%d" % iid), "card opens its image", drv.current_url)
        with urllib.request.urlopen("%s/api/image/%d" % (srv.url, iid)) as r:
            data = json.load(r)
        masks = data["masks"]
        db_masks = su.query(db, "SELECT count(*) FROM masks WHERE image_id = ?", iid)[0][0]
        drawn = lambda: int(drv.find_element(By.ID, "overlay").get_attribute("data-drawn"))  # noqa: E731
        rep.check(len(masks) == db_masks >= 2 and drawn() == len(masks),
                  "image page draws every mask", "%d drawn, %d in the database" % (drawn(), db_masks))
        painted = drv.execute_script(
            "const c = document.getElementById('overlay');"
            "const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
            "let n = 0; for (let i = 3; i < d.length; i += 4) n += d[i] > 0; return n")
        rep.check(painted > 0, "overlay has painted pixels", str(painted))
        drv.save_screenshot(os.path.join(out, "image.png"))

        # the IoU slider, moved with the keyboard to the median score
        ious = sorted(m["predicted_iou"] for m in masks if m["predicted_iou"] is not None)
        target = int(ious[len(ious) // 2] * 100)   # hundredths below the median
        slider = drv.find_element(By.ID, "s-iou")
        slider.send_keys(Keys.RIGHT * target)
        t = float(slider.get_attribute("value"))
        expect = sum(1 for m in masks if m["predicted_iou"] is not None and m["predicted_iou"] >= t)
        rep.check(abs(t - target / 100) < 1e-9, "slider moved to %.2f" % (target / 100), str(t))
        rep.check(drawn() == expect and 0 < expect < len(masks),
                  "IoU slider at %.2f: fewer masks drawn" % t,
                  "%d drawn, %d expected of %d" % (drawn(), expect, len(masks)))
        rep.check(drv.find_element(By.ID, "shown").text == str(expect), "shown count follows",
                  drv.find_element(By.ID, "shown").text)
        drv.save_screenshot(os.path.join(out, "image_iou.png"))

        # hover a pixel of the smallest drawn mask (ties: lower index)
        vis = [m for m in masks if m["predicted_iou"] is not None and m["predicted_iou"] >= t]
        small = min(vis, key=lambda m: (m["area"], m["idx"]))
        W, H = data["width"], data["height"]
        px = mask_pixels(small, H)
        rep.check(len(px) == small["area"], "RLE decodes to the stored area",
                  "%d vs %d" % (len(px), small["area"]))
        x, y = px[len(px) // 2]
        canvas = drv.find_element(By.ID, "overlay")
        rect = drv.execute_script("const r = arguments[0].getBoundingClientRect();"
                                  "return [r.width, r.height]", canvas)
        ox = (x + 0.5) * rect[0] / W - rect[0] / 2
        oy = (y + 0.5) * rect[1] / H - rect[1] / 2
        ActionChains(drv).move_to_element_with_offset(canvas, round(ox), round(oy)).perform()
        tip = drv.find_element(By.ID, "tip")
        wait.until(lambda d: tip.is_displayed())
        text = tip.text
        rep.check(tip.get_attribute("data-id") == str(small["id"]) and
                  ("area %d px" % small["area"]) in text and
                  ("predicted IoU %.3f" % small["predicted_iou"]) in text,
                  "tooltip shows the hovered mask", repr(text))
        drv.save_screenshot(os.path.join(out, "hover.png"))
        ActionChains(drv).click().perform()
        rec = drv.find_element(By.ID, "record")
        rep.check(rec.get_attribute("data-id") == str(small["id"]) and
                  ("area: %d" % small["area"]) in rec.text,
                  "click selects the mask and shows its record", rec.text[:200])

        # the right arrow moves to the next image
        if data["next"] is not None:
            drv.find_element(By.TAG_NAME, "body").send_keys(Keys.ARROW_RIGHT)
            wait.until(lambda d: d.current_url.endswith("/image/%d" % data["next"]))
            rep.check(True, "right arrow opens the next image")
        else:
            drv.find_element(By.TAG_NAME, "body").send_keys(Keys.ARROW_LEFT)
            wait.until(lambda d: d.current_url.endswith("/image/%d" % data["prev"]))
            rep.check(True, "left arrow opens the previous image")

        # failures: the nav link, the card, the reason
        drv.find_element(By.LINK_TEXT, "Failures").click()
        wait.until(lambda d: "status=failed" in d.current_url)
        fcards = drv.find_elements(By.CSS_SELECTOR, "#grid .card")
        rep.check(len(fcards) == len(failed), "failures grid: one card per failed image",
                  "%d cards" % len(fcards))
        drv.save_screenshot(os.path.join(out, "failures.png"))
        fcards[0].click()
        wait.until(lambda d: d.find_element(By.ID, "error").is_displayed())
        err = drv.find_element(By.ID, "error").text
        rep.check(drv.current_url.split("?")[0].endswith("/image/%d" % failed[0][0]) and
                  err == failed[0][1] and "corrupt.jpg" in err,
                  "failed image shows its reason", repr(err))
        drv.save_screenshot(os.path.join(out, "failed.png"))

        # the run page
        drv.get(srv.url + "/")
        rep.check(drv.find_element(By.ID, "n-images").text == str(n_images) and
                  drv.find_element(By.ID, "n-failed").text == str(len(failed)),
                  "run page counts", drv.find_element(By.TAG_NAME, "table").text[:200])
        drv.save_screenshot(os.path.join(out, "run.png"))
        logs = [e for e in drv.get_log("browser") if e.get("level") == "SEVERE"]
        rep.check(not logs, "no JavaScript errors", str(logs[:3]))

        # an image whose file was deleted after the run: its page says so and
        # still draws the masks (the overlay took its height from the photo:
        # it was 0 px high, nothing showed and nothing said why)
        gid, gpath, gmasks = su.query(
            db, "SELECT i.id, i.path, count(m.id) FROM images i JOIN masks m ON m.image_id = i.id "
                "WHERE i.status = 'done' GROUP BY i.id ORDER BY i.id LIMIT 1")[0]
        os.remove(gpath)
        drv.get("%s/image/%d" % (srv.url, gid))
        wait.until(lambda d: d.execute_script(
            "const p = document.getElementById('image-page'); return p && p.dataset.ready === '1'"))
        err = drv.find_element(By.ID, "error")
        h = drv.execute_script("return document.getElementById('overlay').getBoundingClientRect().height")
        rep.check(err.is_displayed() and gpath in err.text and "cannot be shown" in err.text,
                  "deleted image file: the page says it cannot be shown", repr(err.text))
        rep.check(h > 100 and drv.find_element(By.ID, "total").text == str(gmasks),
                  "deleted image file: the %d masks are still drawn" % gmasks, "overlay %s px high" % h)
        drv.save_screenshot(os.path.join(out, "deleted.png"))
    finally:
        drv.quit()
        rc = srv.stop()
        rep.check(rc == 0, "serve exits 0 on SIGTERM", str(rc))
        shutil.rmtree(tmp, ignore_errors=True)
    print("screenshots in " + out)
    return rep.finish()


if __name__ == "__main__":
    sys.exit(main())
