package crebitos

import scala.concurrent.duration._
import scala.util.Random

import io.gatling.commons.validation._
import io.gatling.core.Predef._
import io.gatling.core.controller.inject.open.OpenInjectionStep
import io.gatling.core.structure.ScenarioBuilder
import io.gatling.http.Predef._
import io.gatling.http.check.HttpCheck
import io.gatling.http.request.builder.{ Http, HttpRequestBuilder }

/** The reference load test of docs/load-test.md, for this project (Gatling 3.10, Scala DSL).
  *
  * Phases, in order:
  *   1. 25 users at once debit 1 from account 1 (each 200), then one statement: total exactly -25.
  *   2. 25 users at once credit 1 (each 200), then one statement: total exactly 0.
  *   3. In parallel: the validation chain of each account 1..5, and one statement of account 6
  *      that must answer 404; after that 404 the load phase starts.
  *   4. Load: debits (peak 220/s), credits (110/s) and statements (10/s), each an open-model rate
  *      ramping from 1 user/s to its peak over RINHA_RAMP_SECONDS (default 120), then holding the
  *      peak for RINHA_HOLD_SECONDS (default 120).
  *
  * The checks the challenge's scoring counts have the official forms, so that the scoring, which
  * reads simulation.log, counts this simulation's inconsistencies as it counts the official one's:
  * every balance check is a `validate` named "ConsistenciaSaldoLimite - Transação" (on a
  * transaction answer) or "ConsistenciaSaldoLimite - Extrato" (on a statement), and every exact
  * total is `jmesPath("saldo.total").ofType[Int].is(...)`, which Gatling reports as
  * "jmesPath(saldo.total).find.is(...)". Gatling logs only the first failed check of a request, so
  * the order of the checks of a request matters too.
  *
  * Scenarios and requests carry the official simulation's names (RinhaBackendCrebitosSimulation in
  * the challenge's repository, load-test/user-files/simulations/rinhabackend/): the requests of
  * phases 1 to 3 are all "validações", the load's "débitos", "créditos" and "extratos", which the
  * challenge's text report (gatling-text-report.sh) selects from the report's stats.json.
  *
  * Every virtual user has its own connections and ends after its requests, so every load request
  * arrives on a new TCP connection. The Rust twin of this file is crates/scenario (rinha-scenario):
  * keep the two in step. Its test tests/gatling_twin.rs reads this file: every scenario must be
  * named by a string literal, `scenario("...")`, every request by one, `http("...")`, and every
  * named check, `.validate("...", ...)`, must carry a name the Rust side knows.
  */
class CrebitosSimulation extends Simulation {

  /** A whole number of seconds, at least 1, from the environment variable `name`, or `default`
    * when it is unset. Anything else stops the simulation with a message naming the variable:
    * Gatling itself refuses a 0-second ramp or hold, and "20s" is not a number, both with a less
    * helpful error. gatling/run.sh checks the same before it starts Gatling.
    */
  private def secondsFromEnv(name: String, default: Int): FiniteDuration =
    sys.env.get(name) match {
      case None => default.seconds
      case Some(text) =>
        text.trim.toIntOption
          .filter(_ >= 1)
          .map(_.seconds)
          .getOrElse(
            throw new IllegalArgumentException(s"$name must be a whole number of seconds, at least 1 (got '$text')")
          )
    }

  private val target = sys.env.getOrElse("RINHA_TARGET", "http://localhost:9999")
  private val ramp = secondsFromEnv("RINHA_RAMP_SECONDS", 120)
  private val hold = secondsFromEnv("RINHA_HOLD_SECONDS", 120)

  private val httpProtocol = http
    .baseUrl(target)
    .userAgentHeader("Agente do Caos - 2024/Q1")

  /** The five accounts and their limits (docs/api.md). */
  private val accounts = Seq(1 -> 100000, 2 -> 80000, 3 -> 1000000, 4 -> 10000000, 5 -> 500000)

  /** Users started at once in each of phases 1 and 2. */
  private val concurrentUsers = 25

  /** Concurrent statements after the "danada" credit of the validation chain. */
  private val concurrentStatements = 4

  private def randomAccount(): Int = 1 + Random.nextInt(accounts.size)
  private def randomValue(): Int = 1 + Random.nextInt(10000)
  private def randomDescription(): String = Random.alphanumeric.take(10).mkString

  /** Every request of phases 1 to 3, the 404 included, is named "validações", as in the official
    * simulation: its report, and the challenge's text report that reads it, group them under that
    * one name.
    */
  private def validationRequest: Http = http("validações")

  private def transaction(request: Http, body: String): HttpRequestBuilder =
    request
      .post("/clientes/#{id}/transacoes")
      .header("content-type", "application/json")
      .body(StringBody(body))

  private def statement(request: Http): HttpRequestBuilder = request.get("/clientes/#{id}/extrato")

  /** The balance-within-limit validator of the official checks. `balance` is what the check
    * extracted (`saldo` of a transaction answer, `saldo.total` of a statement); the limit is the
    * session's "limite", which the check just before it saved from the same answer, so the
    * comparison depends on nothing but that answer. A balance or limit that is not an integer
    * fails the check too.
    */
  private val withinLimit: (Option[String], Session) => Validation[Option[String]] = (balance, session) => {
    val saldo = balance.flatMap(_.toLongOption)
    val limite = session("limite").validate[Int].toOption
    (saldo, limite) match {
      case (Some(value), Some(limit)) if value >= -limit.toLong => Success(balance)
      case (Some(value), Some(limit)) => Failure(s"saldo $value is below -limite (-$limit)")
      case _ =>
        Failure(s"saldo $balance or limite ${session.attributes.get("limite")} is not an integer")
    }
  }

  /** The official check of a transaction answer: save its limit, then its balance must not be
    * below minus that limit.
    */
  private def transactionWithinLimit: Seq[HttpCheck] = Seq[HttpCheck](
    jmesPath("limite").ofType[Int].saveAs("limite"),
    jmesPath("saldo").validate("ConsistenciaSaldoLimite - Transação", withinLimit)
  )

  /** The official check of a statement: save its limit, then its total must not be below minus
    * that limit.
    */
  private def statementWithinLimit: Seq[HttpCheck] = Seq[HttpCheck](
    jmesPath("saldo.limite").ofType[Int].saveAs("limite"),
    jmesPath("saldo.total").validate("ConsistenciaSaldoLimite - Extrato", withinLimit)
  )

  // Phases 1 and 2.

  private def concurrentTransactions(users: ScenarioBuilder, kind: String): ScenarioBuilder =
    users
      .exec(session => session.set("id", 1))
      .exec(
        transaction(validationRequest, s"""{"valor": 1, "tipo": "$kind", "descricao": "validacao"}""")
          .check(status.is(200))
      )

  private def totalIs(users: ScenarioBuilder, expected: Int): ScenarioBuilder =
    users
      .exec(session => session.set("id", 1))
      .exec(statement(validationRequest).check(status.is(200), jmesPath("saldo.total").ofType[Int].is(expected)))

  // The official names: the scenario of each exact total names the total it expects.
  private val concurrentDebits = concurrentTransactions(scenario("validação concorrência transações - d"), "d")
  private val totalAfterDebits = totalIs(scenario("validação concorrência saldo - -25"), -concurrentUsers)
  private val concurrentCredits = concurrentTransactions(scenario("validação concorrência transações - c"), "c")
  private val totalAfterCredits = totalIs(scenario("validação concorrência saldo - 0"), 0)

  // Phase 3.

  private val accountFeeder =
    accounts.map { case (id, limit) => Map[String, Any]("id" -> id, "limite" -> limit) }.toArray.queue

  private def latest(index: Int, description: String, kind: String): Seq[HttpCheck] = Seq[HttpCheck](
    jmesPath(s"ultimas_transacoes[$index].descricao").is(description),
    jmesPath(s"ultimas_transacoes[$index].tipo").is(kind),
    jmesPath(s"ultimas_transacoes[$index].valor").ofType[Int].is(1)
  )

  /** One of the statements fetched together after "danada": it must show that credit first, and
    * the limit and balance the credit answered (saved in the session by the credit's checks).
    */
  private def danadaStatement: HttpRequestBuilder =
    statement(validationRequest)
      .check(status.is(200))
      .check(latest(0, "danada", "c"): _*)
      .check(
        jmesPath("saldo.limite").ofType[Int].is("#{limite}"),
        jmesPath("saldo.total").ofType[Int].is("#{saldo}")
      )

  private val invalidBodies = Seq(
    """{"valor": 1.2, "tipo": "d", "descricao": "devolve"}""",
    """{"valor": 1, "tipo": "x", "descricao": "devolve"}""",
    """{"valor": 1, "tipo": "c", "descricao": "123456789 e mais um pouco"}""",
    """{"valor": 1, "tipo": "c", "descricao": ""}""",
    """{"valor": 1, "tipo": "c", "descricao": null}"""
  )

  private val validationSteps = scenario("validações")
    .feed(accountFeeder)
    .exec(
      statement(validationRequest).check(
        status.is(200),
        jmesPath("saldo.limite").ofType[Int].is("#{limite}"),
        jmesPath("saldo.total").ofType[Int].is(0)
      )
    )
    .exec(
      transaction(validationRequest, """{"valor": 1, "tipo": "c", "descricao": "toma"}""")
        .check(status.is(200))
        .check(transactionWithinLimit: _*)
    )
    .exec(
      transaction(validationRequest, """{"valor": 1, "tipo": "d", "descricao": "devolve"}""")
        .check(status.is(200))
        .check(transactionWithinLimit: _*)
    )
    .exec(
      statement(validationRequest)
        .check(status.is(200))
        .check(latest(0, "devolve", "d") ++ latest(1, "toma", "c"): _*)
    )
    .exec(
      // Gatling fetches the resources concurrently once the credit has answered OK, building them
      // with the session its checks left, which holds the balance and limit it answered.
      transaction(validationRequest, """{"valor": 1, "tipo": "c", "descricao": "danada"}""")
        .check(
          status.is(200),
          jmesPath("saldo").ofType[Int].saveAs("saldo"),
          jmesPath("limite").ofType[Int].saveAs("limite")
        )
        .resources((1 to concurrentStatements).map(_ => danadaStatement): _*)
    )

  private val validationChain = invalidBodies.foldLeft(validationSteps) { (chain, body) =>
    chain.exec(transaction(validationRequest, body).check(status.in(422, 400)))
  }

  private val notFound = scenario("validação HTTP 404")
    .exec(session => session.set("id", 6))
    .exec(statement(validationRequest).check(status.is(404)))

  // Phase 4.

  /** A random transaction: a debit may be refused for the limit (422), a credit must pass; an
    * answer 200 gets the official balance check. Each load scenario names its request after itself.
    */
  private def randomTransaction(users: ScenarioBuilder, request: Http, kind: String, allowed: Seq[Int]): ScenarioBuilder =
    users
      .exec(session => session.set("id", randomAccount()))
      .exec(
        request
          .post("/clientes/#{id}/transacoes")
          .header("content-type", "application/json")
          .body(StringBody(_ => s"""{"valor": ${randomValue()}, "tipo": "$kind", "descricao": "${randomDescription()}"}"""))
          .check(status.in(allowed: _*))
          .checkIf((response: Response, _: Session) => response.status.code == 200)(transactionWithinLimit: _*)
      )

  private val debits = randomTransaction(scenario("débitos"), http("débitos"), "d", Seq(200, 422))
  private val credits = randomTransaction(scenario("créditos"), http("créditos"), "c", Seq(200))

  private val statements = scenario("extratos")
    .exec(session => session.set("id", randomAccount()))
    .exec(statement(http("extratos")).check(status.is(200)).check(statementWithinLimit: _*))

  private def load(peak: Int): Seq[OpenInjectionStep] = Seq(
    rampUsersPerSec(1).to(peak).during(ramp),
    constantUsersPerSec(peak).during(hold)
  )

  setUp(
    concurrentDebits.inject(atOnceUsers(concurrentUsers)).andThen(
      totalAfterDebits.inject(atOnceUsers(1)).andThen(
        concurrentCredits.inject(atOnceUsers(concurrentUsers)).andThen(
          totalAfterCredits.inject(atOnceUsers(1)).andThen(
            validationChain.inject(atOnceUsers(accounts.size)),
            notFound.inject(atOnceUsers(1)).andThen(
              debits.inject(load(220)),
              credits.inject(load(110)),
              statements.inject(load(10))
            )
          )
        )
      )
    )
  ).protocols(httpProtocol)
}
